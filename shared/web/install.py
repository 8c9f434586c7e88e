"""Wires sessions and pages into a service app (called by the kernel's service factory)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from shared.acting import ActingMiddleware
from shared.auth import Directory
from shared.members import Members
from shared.settings import RelaisSettings
from shared.web.oidc import OidcClient
from shared.web.oidc_routes import people_router
from shared.web.pages import services_with_pages
from shared.web.people import PersonSessionStore
from shared.web.router import web_router
from shared.web.sessions import SessionConfig, SessionStore, throttle_for
from shared.web.teams import teams_router


def session_config(settings: RelaisSettings) -> SessionConfig:
    return SessionConfig(
        max_age=timedelta(hours=settings.session_max_hours),
        idle=timedelta(minutes=settings.session_idle_minutes),
        # Plain-HTTP loopback is for development only; anywhere else the cookie needs HTTPS.
        secure=settings.environment != "development",
    )


def install_web(app: FastAPI, service: str, directory: Directory, settings: RelaisSettings) -> SessionStore:
    """Every service accepts the session cookie; the services with pages also serve them and the sign-in."""
    members = Members(directory)
    store = PersonSessionStore(directory, session_config(settings), members=members)
    app.state.sessions = store
    # The person a session names reaches the audit rows its request writes.
    app.add_middleware(ActingMiddleware)
    if service in services_with_pages():
        throttle = throttle_for(directory, settings.signin_max_failures, settings.signin_window_seconds)
        client = OidcClient(settings) if settings.oidc_configured else None
        # First: its sign-in page, and its refusal of token sign-in when that is off, win over the router's.
        app.include_router(
            people_router(
                service, directory, store, throttle, members, client, settings.resolved_token_signin
            )
        )
        app.include_router(teams_router(service, directory, store))
        app.include_router(web_router(service, directory, store, throttle))
    return store
