"""Sign-in, sign-out, static files and pages of one service, under `/{service}/app/`.

Pages are shells: HTML and own scripts, no data inside. Their scripts read the public API with the session
cookie, so a page shows exactly what the API lets the signed-in organisation see.
"""

from __future__ import annotations

import hmac
import secrets
from html import escape
from pathlib import Path
from string import Template
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from shared.auth import Directory, Principal
from shared.web.pages import HOME, ROLE_LABELS, Page, navigation, pages_of
from shared.web.sessions import SessionStore, SignInThrottle, csrf_matches, csrf_token

HERE = Path(__file__).resolve().parent
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Only these files are served: a fixed list, so no path ever reaches the file system from a URL.
STATIC_FILES = {path.name: path for path in (HERE / "static").iterdir() if path.suffix in STATIC_TYPES}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
SIGNIN_COOKIE = "relais_signin"
SECURE_SIGNIN_COOKIE = "__Host-relais_signin"
SIGNIN_COOKIE_SECONDS = 1800
FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 10


def _template(name: str) -> Template:
    return Template((HERE / "templates" / name).read_text(encoding="utf-8"))


def _html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


class FormTooLarge(ValueError):
    """A page form with more fields than any of ours has."""


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        return {}
    try:
        fields = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:  # parse_qs refuses more than max_num_fields with a bare ValueError
        raise FormTooLarge from exc
    return {key: values[0] for key, values in fields.items()}


def web_router(
    service: str, directory: Directory, store: SessionStore, throttle: SignInThrottle
) -> APIRouter:
    prefix = f"/{service}/app"
    router = APIRouter(prefix=prefix, include_in_schema=False)
    config = store.config
    signin_cookie = SECURE_SIGNIN_COOKIE if config.secure else SIGNIN_COOKIE
    layout = _template("layout.html")
    signin_page = _template("signin.html")

    def session_of(request: Request) -> tuple[str, Principal] | None:
        session_id = request.cookies.get(config.cookie_name)
        principal = store.authenticate(session_id) if session_id else None
        if session_id and principal is None:
            # A session id that names no live session is a failed authentication, on the pages too.
            rate_limits = getattr(request.app.state, "rate_limits", None)
            if rate_limits is not None:
                rate_limits.failed_authentication(request.client.host if request.client else "unknown")
        return (session_id, principal) if session_id and principal else None

    def home_of(principal: Principal) -> str:
        # Served alone (`relais serve snp`), a service lands people on its own pages rather than on another's.
        home = HOME.get(principal.role)
        if home and home.startswith(f"{prefix}/"):
            return home
        own = [page.path for page in pages_of(service) if principal.role in page.roles]
        return own[0] if own else home or f"{prefix}/"

    def render_signin(message: str = "", status: int = 200) -> HTMLResponse:
        nonce = secrets.token_urlsafe(32)
        body = signin_page.substitute(
            action=f"{prefix}/signin",
            csrf=nonce,
            message=escape(message),
            message_class="error" if message else "hidden",
            static=f"{prefix}/static",
        )
        response = _html(body, status)
        # Pre-session double submit: the form's hidden value must match this cookie (stops login CSRF).
        response.set_cookie(
            signin_cookie, nonce, max_age=SIGNIN_COOKIE_SECONDS, path="/", secure=config.secure,
            httponly=True, samesite="strict",
        )
        return response

    def render_page(session_id: str, principal: Principal, title: str, content: str, script: str) -> HTMLResponse:
        current = ' aria-current="page"'
        nav = "".join(
            f'<a href="{escape(page.path)}"{current if page.title == title else ""}>{escape(page.title)}</a>'
            for page in navigation(principal.role)
        )
        scripts = f'<script src="{prefix}/static/{escape(script)}"></script>' if script else ""
        body = layout.substitute(
            title=escape(title),
            organisation=escape(principal.name),
            person=escape(principal.person.name) if principal.person else "",
            organisation_id=escape(principal.organisation_id),
            role=escape(principal.role.value),
            role_label=escape(ROLE_LABELS.get(principal.role, principal.role.value)),
            nav=nav,
            csrf=csrf_token(session_id),
            signout=f"{prefix}/signout",
            static=f"{prefix}/static",
            content=content,
            scripts=scripts,
        )
        return _html(body)

    @router.get("/")
    def app_home(request: Request) -> Response:
        current = session_of(request)
        if current is None:
            return _redirect(f"{prefix}/signin")
        session_id, principal = current
        if principal.role in HOME:
            return _redirect(home_of(principal))
        content = (
            '<section class="card"><h2>Aucune page pour votre rôle</h2><p>Votre organisation utilise Relais '
            "par son API ; les pages sont destinées aux équipes traitantes et aux CPTS.</p></section>"
        )
        return render_page(session_id, principal, "Accueil", content, "")

    @router.get("/signin")
    def signin_form() -> Response:
        # Always the form, even over a live session: signing in again replaces it (and its id) with a new one.
        return render_signin()

    @router.post("/signin")
    async def signin(request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        wait = throttle.retry_after(address)
        if wait:
            response = render_signin("Trop de tentatives : réessayez dans quelques minutes.", 429)
            response.headers["Retry-After"] = str(wait)
            return response
        try:
            form = await _form(request)
        except FormTooLarge:
            throttle.failed(address)
            return render_signin("Formulaire invalide.", 400)
        nonce = request.cookies.get(signin_cookie, "")
        if (
            request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none")
            or not nonce
            or not hmac.compare_digest(nonce, form.get("csrf", ""))
        ):
            return render_signin("Le formulaire a expiré : saisissez à nouveau le jeton.", 403)
        token = form.get("token", "").strip()
        principal = await run_in_threadpool(directory.authenticate, token) if token else None
        if principal is None:
            throttle.failed(address)
            return render_signin("Jeton inconnu ou révoqué.", 401)
        # Success clears nothing: a guesser holding one valid token must not reset the count of its guesses.
        previous = request.cookies.get(config.cookie_name)
        if previous:
            # A fresh id at every sign-in: a session id planted before sign-in is never promoted (fixation).
            await run_in_threadpool(store.close, previous)
        session_id = await run_in_threadpool(store.open, principal)
        signed_in = _redirect(home_of(principal))
        signed_in.set_cookie(
            config.cookie_name, session_id, max_age=int(config.max_age.total_seconds()), path="/",
            secure=config.secure, httponly=True, samesite="strict",
        )
        signed_in.delete_cookie(signin_cookie, path="/", secure=config.secure, httponly=True, samesite="strict")
        return signed_in

    @router.post("/signout")
    async def signout(request: Request) -> Response:
        try:
            form = await _form(request)
        except FormTooLarge:
            return _html("<!doctype html><title>Refusé</title><p>Formulaire invalide.</p>", 400)
        session_id = request.cookies.get(config.cookie_name)
        if session_id:
            if not csrf_matches(session_id, form.get("csrf")):
                return _html("<!doctype html><title>Refusé</title><p>Jeton CSRF manquant ou invalide.</p>", 403)
            await run_in_threadpool(store.close, session_id)
        response = _redirect(f"{prefix}/signin")
        response.delete_cookie(
            config.cookie_name, path="/", secure=config.secure, httponly=True, samesite="strict"
        )
        return response

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        path = STATIC_FILES.get(name)
        if path is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(
            path.read_bytes(),
            media_type=STATIC_TYPES[path.suffix],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    for page in pages_of(service):
        router.add_api_route(f"/{page.slug}", _page_route(page, session_of, render_page, prefix), methods=["GET"])
    return router


def _page_route(page: Page, session_of, render_page, prefix: str):
    content = (HERE / "templates" / page.template).read_text(encoding="utf-8")

    def show(request: Request) -> Response:
        current = session_of(request)
        if current is None:
            return _redirect(f"{prefix}/signin")
        session_id, principal = current
        if principal.role not in page.roles:
            allowed = ", ".join(ROLE_LABELS[role] for role in sorted(page.roles))
            refusal = (
                f'<section class="card"><h2>Page réservée</h2><p>Cette page est destinée au rôle : '
                f"{escape(allowed)}.</p></section>"
            )
            response = render_page(session_id, principal, page.title, refusal, "")
            response.status_code = 403
            return response
        return render_page(session_id, principal, page.title, content, page.script)

    return show

