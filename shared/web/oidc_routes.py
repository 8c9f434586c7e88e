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


class PeopleSignIn:
    """The sign-in pages of people for one service (state shared by its routes)."""

    def __init__(
        self,
        service: str,
        directory: Directory,
        store: PersonSessionStore,
        throttle: SignInThrottle,
        members: MembershipSource,
        client: OidcClient | None,
        token_signin: bool,
    ) -> None:
        self.service, self.directory, self.store, self.throttle = service, directory, store, throttle
        self.members, self.client, self.token_signin = members, client, token_signin
        self.prefix = f"/{service}/app"
        self.secure = store.config.secure
        self.page = _template("signin-people.html")
        self.button, self.token_form, self.chooser = (
            _template(name) for name in ("psc-button.html", "token-form.html", "choose-organisation.html")
        )
        self.logins = PendingLogins(directory.engine, timedelta(seconds=LOGIN_SECONDS))

    def router(self) -> APIRouter:
        """Mounted before the router of the pages, so its `/signin` page (and refusal of token sign-in) win."""
        router = APIRouter(prefix=self.prefix, include_in_schema=False)
        router.add_api_route("/signin", self.signin_form, methods=["GET"])
        if not self.token_signin:
            router.add_api_route("/signin", self.token_signin_off, methods=["POST"])
        router.add_api_route("/oidc/login", self.login, methods=["GET"])
        router.add_api_route("/oidc/callback", self.callback, methods=["GET"])
        router.add_api_route("/oidc/choose", self.choose, methods=["POST"])
        return router

    def render(
        self, body: str, message: str = "", status: int = 200, title: str = "Connexion", refresh: str = ""
    ) -> HTMLResponse:
        html = self.page.substitute(
            title=escape(title), static=f"{self.prefix}/static", message=escape(message),
            message_class="error" if message else "hidden", body=body, refresh=refresh,
        )
        return _html(html, status)

    def signin_page(self, message: str = "", status: int = 200) -> HTMLResponse:
        parts = [self.button.substitute(login=f"{self.prefix}/oidc/login")] if self.client else []
        nonce = secrets.token_urlsafe(32)
        if self.token_signin:
            parts.append(self.token_form.substitute(action=f"{self.prefix}/signin", csrf=nonce))
        if not parts:
            parts.append("  <p>Aucune méthode de connexion n'est configurée (voir docs/operations.md).</p>")
        response = self.render("\n".join(parts), message, status)
        if self.token_signin:
            # The router's token form checks this double-submit cookie (stops login CSRF).
            response.set_cookie(
                SECURE_SIGNIN_COOKIE if self.secure else SIGNIN_COOKIE, nonce, max_age=SIGNIN_COOKIE_SECONDS,
                path="/", secure=self.secure, httponly=True, samesite="strict",
            )
        return response

    def _audit(self, request: Request, principal: Principal | None, reason: str, outcome: str = "denied") -> None:
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.record_refusal(
                f"{request.method} {self.prefix}/oidc",
                organisation_id=principal.organisation_id if principal else None,
                role=principal.role.value if principal else None,
                resource=request.url.path, reason=reason, outcome=outcome,
            )

    def refuse(self, request: Request, reason: str, message_key: str, status: int) -> HTMLResponse:
        self.throttle.failed(request.client.host if request.client else "unknown")
        self._audit(request, None, reason)
        response = self.signin_page(MESSAGES[message_key], status)
        response.delete_cookie(STATE_COOKIE, path=self.prefix, secure=self.secure, httponly=True, samesite="lax")
        return response

    async def open_session(self, request: Request, principal: Principal, person: Person) -> Response:
        note_person(person)
        session_id = await run_in_threadpool(self.store.open_for, principal, person)
        self._audit(request, principal, "signed-in", outcome="ok")
        home = escape(home_for(self.service, principal))
        # A page of our own leads on: the Strict session cookie is not sent on the provider's cross-site redirect.
        body = f'  <p><a class="button" id="continue" href="{home}">Continuer vers Relais</a></p>'
        response = self.render(body, title="Connecté", refresh=f'<meta http-equiv="refresh" content="0;url={home}">')
        config = self.store.config
        response.set_cookie(
            config.cookie_name, session_id, max_age=int(config.max_age.total_seconds()), path="/",
            secure=self.secure, httponly=True, samesite="strict",
        )
        response.delete_cookie(STATE_COOKIE, path=self.prefix, secure=self.secure, httponly=True, samesite="lax")
        response.delete_cookie(CHOICE_COOKIE, path=self.prefix, secure=self.secure, httponly=True, samesite="strict")
        return response

    def signin_form(self) -> Response:
        return self.signin_page()

    def token_signin_off(self) -> Response:
        return self.signin_page(MESSAGES["token-off"], 403)

    async def login(self, request: Request) -> Response:
        if self.client is None:
            return self.signin_page(MESSAGES["provider"], 404)
        try:
            authorization = await run_in_threadpool(self.client.authorization, self.service)
        except SignInFailed:
            return self.signin_page(MESSAGES["provider"], 502)
        await run_in_threadpool(self.logins.start, authorization)
        response = RedirectResponse(authorization.url, status_code=303, headers={"Cache-Control": "no-store"})
        # Lax, not Strict: the provider sends the browser back with a cross-site top-level GET.
        response.set_cookie(
            STATE_COOKIE, authorization.state, max_age=LOGIN_SECONDS, path=self.prefix, secure=self.secure,
            httponly=True, samesite="lax",
        )
        return response

    async def callback(self, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        if self.throttle.retry_after(address) or self.client is None:
            return self.signin_page("Trop de tentatives : réessayez dans quelques minutes.", 429)
        state = request.query_params.get("state", "")
        cookie = request.cookies.get(STATE_COOKIE, "")
        if not state or not cookie or not hmac.compare_digest(state, cookie):
            return self.refuse(request, "oidc-state", "state", 400)
        pending = await run_in_threadpool(self.logins.take, state)
        if pending is None:
            return self.refuse(request, "oidc-state-replayed", "state", 400)
        code = request.query_params.get("code", "")
        if not code or request.query_params.get("error"):
            return self.refuse(request, "oidc-provider-error", "provider", 401)
        try:
            identity = await run_in_threadpool(
                self.client.sign_in, self.service, code, pending.code_verifier, pending.nonce
            )
        except SignInFailed as failure:
            return self.refuse(request, f"oidc-{failure.reason}", "provider", 401)
        person = Person(identity.rpps, identity.name)
        note_person(person)
        choices = await run_in_threadpool(self.members.organisations_for, identity.rpps)
        if not choices:
            return self.refuse(request, "oidc-unknown-person", "unknown-person", 403)
        if len(choices) == 1:
            return await self.open_session(request, choices[0], person)
        return await self.offer_choice(person, choices)

    async def offer_choice(self, person: Person, choices: list[Principal]) -> Response:
        ids = [principal.organisation_id for principal in choices]
        choice = await run_in_threadpool(self.logins.offer, person, ids)
        options = "\n".join(
            f'      <label><input type="radio" name="organisation" value="{escape(p.organisation_id)}" required>'
            f" {escape(p.name)}</label>"
            for p in choices
        )
        body = self.chooser.substitute(
            action=f"{self.prefix}/oidc/choose", choice=choice, person=escape(person.name), options=options
        )
        response = self.render(body, title="Choisir l'organisation")
        response.set_cookie(
            CHOICE_COOKIE, choice, max_age=LOGIN_SECONDS, path=self.prefix, secure=self.secure, httponly=True,
            samesite="strict",
        )
        return response

    async def choose(self, request: Request) -> Response:
        form = await _form(request)
        choice = form.get("choice", "")
        cookie = request.cookies.get(CHOICE_COOKIE, "")
        if not choice or not cookie or not hmac.compare_digest(choice, cookie):
            return self.refuse(request, "oidc-choice", "state", 400)
        offer = await run_in_threadpool(self.logins.take_offer, choice)
        if offer is None:
            return self.refuse(request, "oidc-choice-replayed", "state", 400)
        person, allowed = offer
        wanted = form.get("organisation", "")
        principal = await run_in_threadpool(self.directory.get, wanted) if wanted in allowed else None
        if principal is None:
            note_person(person)
            return self.refuse(request, "oidc-choice-outside", "choice", 403)
        return await self.open_session(request, principal, person)


def people_router(
    service: str,
    directory: Directory,
    store: PersonSessionStore,
    throttle: SignInThrottle,
    members: MembershipSource,
    client: OidcClient | None,
    token_signin: bool,
) -> APIRouter:
    return PeopleSignIn(service, directory, store, throttle, members, client, token_signin).router()
