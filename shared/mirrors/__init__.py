"""The mirrors of the registry that admissions publishes on ``relais.careteam``, written once for every service that
routes by care team or territory (discharge, snp).

A service declares its two tables (:class:`CareTeamMirror` and :class:`TerritoryMirror` under its own table names, in
its own database), hands each registry record to its message bus as a :class:`MirrorCareTeam` or
:class:`MirrorTerritory` command, and applies it with :func:`apply_careteam` / :func:`apply_territory`, which keep the
one ordering rule of :mod:`shared.mirrors.ordering`. Its Alembic history brings older tables to this schema with
:func:`shared.mirrors.migration.upgrade_to_shared_schema`.
"""

from shared.mirrors.apply import (
    MirrorCareTeam,
    MirrorRepository,
    MirrorTerritory,
    apply_careteam,
    apply_territory,
    registry_command,
)
from shared.mirrors.ordering import Stamp, supersedes
from shared.mirrors.tables import CareTeamMirror, MirrorTables, TerritoryMirror

__all__ = [
    "CareTeamMirror",
    "MirrorCareTeam",
    "MirrorRepository",
    "MirrorTables",
    "MirrorTerritory",
    "Stamp",
    "TerritoryMirror",
    "apply_careteam",
    "apply_territory",
    "registry_command",
    "supersedes",
]
