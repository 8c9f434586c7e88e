"""Which pages each service serves, who may open them, and the navigation between them (data, not code).

Pages live under their service's prefix (`/discharge/app/...`, `/snp/app/...`), so the combined process and
separately served services answer the same paths; `relais run` adds `/app/` as a shortcut to the home page.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.events import Role


@dataclass(frozen=True)
class Page:
    service: str
    slug: str  # the path segment under /{service}/app/
    title: str
    template: str  # a file of shared/web/templates/
    script: str  # a file of shared/web/static/
    roles: frozenset[Role]

    @property
    def path(self) -> str:
        return f"/{self.service}/app/{self.slug}"


PAGES: tuple[Page, ...] = (
    Page("discharge", "worklist", "Liste de travail de l'équipe", "worklist.html", "worklist.js",
         frozenset({Role.TEAM})),
    Page("discharge", "board", "Tableau de bord de la CPTS", "board.html", "board.js", frozenset({Role.CPTS})),
    Page("discharge", "hospital", "Relais de l'établissement", "hospital.html", "hospital.js",
         frozenset({Role.HOSPITAL})),
    Page("snp", "dashboard", "Soins non programmés", "snp-dashboard.html", "snp-dashboard.js",
         frozenset({Role.CPTS})),
)

# Where each role lands after signing in; a role without pages lands on its service's app home.
HOME: dict[Role, str] = {
    Role.TEAM: "/discharge/app/worklist",
    Role.CPTS: "/discharge/app/board",
    Role.HOSPITAL: "/discharge/app/hospital",
}

ROLE_LABELS: dict[Role, str] = {
    Role.HOSPITAL: "Établissement de santé",
    Role.TEAM: "Équipe traitante",
    Role.CPTS: "CPTS",
    Role.DAC: "DAC",
    Role.SAS: "SAS",
    Role.ADMIN: "Administration",
}


def pages_of(service: str) -> tuple[Page, ...]:
    return tuple(page for page in PAGES if page.service == service)


def services_with_pages() -> frozenset[str]:
    return frozenset(page.service for page in PAGES)


def navigation(role: Role) -> list[Page]:
    return [page for page in PAGES if role in page.roles]
