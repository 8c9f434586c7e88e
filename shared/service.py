"""What every service's composition root returns: its runtime (database, bus, workers) and its HTTP app."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI

from shared.api.app import capability_statement, create_service_app
from shared.api.limits import RateLimits, RequestLimits
from shared.runtime import Runtime
from shared.web.install import install_web


@dataclass
class Service:
    runtime: Runtime
    app: FastAPI

    @property
    def name(self) -> str:
        return self.runtime.name


def service_app(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    resources: Sequence[dict[str, Any]] = (),
    messaging: bool = False,
) -> FastAPI:
    app = create_service_app(
        service=runtime.name,
        title=title,
        description=description,
        routers=routers,
        limits=RequestLimits.from_settings(runtime.settings),
        rate_limits=RateLimits(
            runtime.settings.resolved_rate_limit_per_organisation, runtime.settings.resolved_rate_limit_failed_auth
        ),
        ready_checks={"database": runtime.database_ready, "workers": runtime.workers_ready},
        degraded_checks={"bus": runtime.bus.ping},
        capability=capability_statement(runtime.name, resources, messaging),
        lifespan_start=runtime.start,
        lifespan_stop=runtime.stop,
    )
    app.state.runtime = runtime
    app.state.directory = runtime.directory
    install_web(app, runtime.name, runtime.directory, runtime.settings)
    return app
