"""The four service apps on SQLite and the embedded log in a temporary directory, with a token per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from services.admissions.bootstrap import bootstrap as admissions
from services.discharge.bootstrap import bootstrap as discharge
from services.notifications.bootstrap import bootstrap as notifications
from services.snp.bootstrap import bootstrap as snp
from shared.events import Role
from shared.service import Service
from shared.settings import AdmissionsSettings, DischargeSettings, NotificationsSettings, SnpSettings
from tests import factories as f

BOOTSTRAPS = {
    "admissions": (admissions, AdmissionsSettings),
    "discharge": (discharge, DischargeSettings),
    "snp": (snp, SnpSettings),
    "notifications": (notifications, NotificationsSettings),
}
SERVICES = tuple(BOOTSTRAPS)
# The hospital is the factories' FINESS, so the factories' messages are the caller's own.
ORGANISATIONS = {
    Role.HOSPITAL: f.DEFAULT_FINESS,
    Role.TEAM: "msp-fuzz",
    Role.CPTS: "cpts-fuzz",
    Role.DAC: "dac-fuzz",
    Role.SAS: "sas-fuzz",
    Role.ADMIN: "admin-fuzz",
}


@dataclass
class FuzzService:
    name: str
    service: Service
    tokens: dict[Role, str] = field(default_factory=dict)

    @property
    def app(self) -> Any:
        return self.service.app

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def row_counts(self, skip: frozenset[str] = frozenset()) -> dict[str, int]:
        """Rows per table of the service's own database (what a rejected request must leave unchanged)."""
        engine = self.service.runtime.engine
        with engine.connect() as connection:
            names = [n for n in inspect(connection).get_table_names() if n not in skip]
            return {n: connection.execute(text(f'SELECT count(*) FROM "{n}"')).scalar_one() for n in names}

    def close(self) -> None:
        self.service.runtime.close()


def build(name: str, data_dir: Path) -> FuzzService:
    """One service, no background workers (the fuzzers look at HTTP answers and stored rows only)."""
    boot, settings_class = BOOTSTRAPS[name]
    settings = settings_class(environment="test", data_dir=data_dir, max_body_bytes=200_000)
    service = boot(settings, run_workers=False)
    directory = service.runtime.directory
    tokens = {role: directory.add(role, org_id, f"{role.value} fuzz") for role, org_id in ORGANISATIONS.items()}
    return FuzzService(name, service, tokens)
