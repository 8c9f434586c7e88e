"""Sign-in of people through OpenID Connect (Pro Santé Connect), under `/{service}/app/`.

`/signin` shows the Pro Santé Connect button (and, where token sign-in is on, the token form the router
handles); `/oidc/login` starts the authorization; `/oidc/callback` checks the browser's `state`, consumes it
(once), signs in with the provider and matches the RPPS to the organisations' members; `/oidc/choose` lets a
person acting for several organisations pick one. The session is then the pages' usual cookie session.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from shared.acting import Person, note_person
from shared.auth import Directory, Principal
from shared.members import MembershipSource
from shared.web.oidc import OidcClient, SignInFailed
from shared.web.oidc_logins import PendingLogins
from shared.web.pages import HOME, pages_of
from shared.web.people import PersonSessionStore
from shared.web.router import (
    PAGE_HEADERS,
    SECURE_SIGNIN_COOKIE,
    SIGNIN_COOKIE,
    SIGNIN_COOKIE_SECONDS,
    _form,
    _template,
)
from shared.web.sessions import SignInThrottle

STATE_COOKIE = "relais_oidc"
CHOICE_COOKIE = "relais_oidc_choice"
LOGIN_SECONDS = 600
MESSAGES = {
    "state": "La connexion a expiré ou a déjà servi : recommencez.",
    "unknown-person": "Votre RPPS n'est membre d'aucune organisation inscrite à Relais : "
    "demandez à votre organisation de vous ajouter.",
    "provider": "Pro Santé Connect n'a pas confirmé votre identité : recommencez.",
    "token-off": "La connexion par jeton d'organisation est désactivée : connectez-vous avec Pro Santé Connect.",
    "choice": "Choisissez une des organisations proposées.",
}


def home_for(service: str, principal: Principal) -> str:
    prefix = f"/{service}/app"
    home = HOME.get(principal.role)
    if home and home.startswith(f"{prefix}/"):
        return home
    own = [page.path for page in pages_of(service) if principal.role in page.roles]
    return own[0] if own else home or f"{prefix}/"


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


def people_router(
    service: str,
    directory: Directory,
    store: PersonSessionStore,
    throttle: SignInThrottle,
    members: MembershipSource,
    client: OidcClient | None,
    token_signin: bool,
) -> APIRouter:
    """Mounted before the router of the pages, so its `/signin` page (and refusal of token sign-in) win."""
    prefix = f"/{service}/app"
    router = APIRouter(prefix=prefix, include_in_schema=False)
    config = store.config
    secure = config.secure
    page = _template("signin-people.html")
    button, token_form, chooser = (
        _template(name) for name in ("psc-button.html", "token-form.html", "choose-organisation.html")
    )
    logins = PendingLogins(directory.engine, timedelta(seconds=LOGIN_SECONDS))

    def render(
        body: str, message: str = "", status: int = 200, title: str = "Connexion", refresh: str = ""
    ) -> HTMLResponse:
        html = page.substitute(
            title=escape(title), static=f"{prefix}/static", message=escape(message),
            message_class="error" if message else "hidden", body=body, refresh=refresh,
        )
        return _html(html, status)

    def signin_page(message: str = "", status: int = 200) -> HTMLResponse:
        parts = [button.substitute(login=f"{prefix}/oidc/login")] if client else []
        nonce = secrets.token_urlsafe(32)
        if token_signin:
            parts.append(token_form.substitute(action=f"{prefix}/signin", csrf=nonce))
        if not parts:
            parts.append('  <p>Aucune méthode de connexion n\'est configurée (voir docs/operations.md).</p>')
        response = render("\n".join(parts), message, status)
        if token_signin:
            # The router's token form checks this double-submit cookie (stops login CSRF).
            response.set_cookie(
                SECURE_SIGNIN_COOKIE if secure else SIGNIN_COOKIE, nonce, max_age=SIGNIN_COOKIE_SECONDS, path="/",
                secure=secure, httponly=True, samesite="strict",
            )
        return response

    def refuse(request: Request, reason: str, message_key: str, status: int) -> HTMLResponse:
        throttle.failed(request.client.host if request.client else "unknown")
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.record_refusal(
                f"{request.method} {prefix}/oidc", organisation_id=None, role=None, resource=request.url.path,
                reason=reason,
            )
        response = signin_page(MESSAGES[message_key], status)
        response.delete_cookie(STATE_COOKIE, path=prefix, secure=secure, httponly=True, samesite="lax")
        return response

    async def open_session(request: Request, principal: Principal, person: Person) -> Response:
        note_person(person)
        session_id = await run_in_threadpool(store.open_for, principal, person)
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.record_refusal(
                f"{request.method} {prefix}/oidc", organisation_id=principal.organisation_id,
                role=principal.role.value, resource=request.url.path, reason="signed-in", outcome="ok",
            )
        home = home_for(service, principal)
        # A page of our own leads on: the Strict session cookie is not sent on the provider's cross-site redirect.
        body = f'  <p><a class="button" id="continue" href="{escape(home)}">Continuer vers Relais</a></p>'
        response = render(body, title="Connecté", refresh=f'<meta http-equiv="refresh" content="0;url={escape(home)}">')
        response.set_cookie(
            config.cookie_name, session_id, max_age=int(config.max_age.total_seconds()), path="/", secure=secure,
            httponly=True, samesite="strict",
        )
        response.delete_cookie(STATE_COOKIE, path=prefix, secure=secure, httponly=True, samesite="lax")
        response.delete_cookie(CHOICE_COOKIE, path=prefix, secure=secure, httponly=True, samesite="strict")
        return response

    @router.get("/signin")
    def signin_form() -> Response:
        return signin_page()

    if not token_signin:

        @router.post("/signin")
        def token_signin_off() -> Response:
            return signin_page(MESSAGES["token-off"], 403)

    @router.get("/oidc/login")
    async def login(request: Request) -> Response:
        if client is None:
            return signin_page(MESSAGES["provider"], 404)
        try:
            authorization = await run_in_threadpool(client.authorization, service)
        except SignInFailed:
            return signin_page(MESSAGES["provider"], 502)
        await run_in_threadpool(logins.start, authorization)
        response = RedirectResponse(authorization.url, status_code=303, headers={"Cache-Control": "no-store"})
        # Lax, not Strict: the provider sends the browser back with a cross-site top-level GET.
        response.set_cookie(
            STATE_COOKIE, authorization.state, max_age=LOGIN_SECONDS, path=prefix, secure=secure, httponly=True,
            samesite="lax",
        )
        return response

    @router.get("/oidc/callback")
    async def callback(request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        if throttle.retry_after(address) or client is None:
            return signin_page("Trop de tentatives : réessayez dans quelques minutes.", 429)
        state = request.query_params.get("state", "")
        cookie = request.cookies.get(STATE_COOKIE, "")
        if not state or not cookie or not hmac.compare_digest(state, cookie):
            return refuse(request, "oidc-state", "state", 400)
        pending = await run_in_threadpool(logins.take, state)
        if pending is None:
            return refuse(request, "oidc-state-replayed", "state", 400)
        code = request.query_params.get("code", "")
        if not code or request.query_params.get("error"):
            return refuse(request, "oidc-provider-error", "provider", 401)
        try:
            identity = await run_in_threadpool(client.sign_in, service, code, pending.code_verifier, pending.nonce)
        except SignInFailed as failure:
            return refuse(request, f"oidc-{failure.reason}", "provider", 401)
        person = Person(identity.rpps, identity.name)
        note_person(person)
        choices = await run_in_threadpool(members.organisations_for, identity.rpps)
        if not choices:
            return refuse(request, "oidc-unknown-person", "unknown-person", 403)
        throttle.succeeded(address)
        if len(choices) == 1:
            return await open_session(request, choices[0], person)
        choice = await run_in_threadpool(logins.offer, person, [principal.organisation_id for principal in choices])
        options = "\n".join(
            f'      <label><input type="radio" name="organisation" value="{escape(p.organisation_id)}" required>'
            f" {escape(p.name)}</label>"
            for p in choices
        )
        body = chooser.substitute(
            action=f"{prefix}/oidc/choose", choice=choice, person=escape(person.name), options=options
        )
        response = render(body, title="Choisir l'organisation")
        response.set_cookie(
            CHOICE_COOKIE, choice, max_age=LOGIN_SECONDS, path=prefix, secure=secure, httponly=True, samesite="strict"
        )
        return response

    @router.post("/oidc/choose")
    async def choose(request: Request) -> Response:
        form = await _form(request)
        choice = form.get("choice", "")
        cookie = request.cookies.get(CHOICE_COOKIE, "")
        if not choice or not cookie or not hmac.compare_digest(choice, cookie):
            return refuse(request, "oidc-choice", "state", 400)
        offer = await run_in_threadpool(logins.take_offer, choice)
        if offer is None:
            return refuse(request, "oidc-choice-replayed", "state", 400)
        person, allowed = offer
        wanted = form.get("organisation", "")
        principal = await run_in_threadpool(directory.get, wanted) if wanted in allowed else None
        if principal is None:
            note_person(person)
            return refuse(request, "oidc-choice-outside", "choice", 403)
        return await open_session(request, principal, person)

    return router
