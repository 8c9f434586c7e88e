"""Wires sessions and pages into a service app (called by the kernel's service factory)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from shared.auth import Directory
from shared.settings import RelaisSettings
from shared.web.pages import services_with_pages
from shared.web.router import web_router
from shared.web.sessions import SessionConfig, SessionStore, throttle_for


def session_config(settings: RelaisSettings) -> SessionConfig:
    return SessionConfig(
        max_age=timedelta(hours=settings.session_max_hours),
        idle=timedelta(minutes=settings.session_idle_minutes),
        # Plain-HTTP loopback is for development only; anywhere else the cookie needs HTTPS.
        secure=settings.environment != "development",
    )


def install_web(app: FastAPI, service: str, directory: Directory, settings: RelaisSettings) -> SessionStore:
    """Every service accepts the session cookie; the services with pages also serve them and the sign-in."""
    store = SessionStore(directory, session_config(settings))
    app.state.sessions = store
    if service in services_with_pages():
        throttle = throttle_for(directory, settings.signin_max_failures, settings.signin_window_seconds)
        app.include_router(web_router(service, directory, store, throttle))
    return store
