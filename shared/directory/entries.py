"""Directory entries typed by an administrator, for what the public extractions lack (a DAC, a team's own id)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert
from sqlalchemy.engine import Engine

from shared.communes import commune, communes_for_postal_code
from shared.directory.tables import DIRECTORY_ORGANISATION, create_directory_tables, folded
from shared.events import Role

MANUAL = "manual"  # an import never prunes these; a later import of the same id replaces it


def set_entry(
    engine: Engine,
    organisation_id: str,
    *,
    name: str,
    role: Role,
    insee: str,
    postal_code: str | None = None,
    address: str | None = None,
) -> None:
    """Create or replace the directory entry of `organisation_id` (ValueError for an unknown commune)."""
    place = commune(insee)
    if place is None:
        raise ValueError("not an INSEE commune code")
    if postal_code is not None and insee not in {c.insee for c in communes_for_postal_code(postal_code)}:
        raise ValueError("this postal code does not serve this commune")
    row = {
        "id": organisation_id,
        "id_system": MANUAL,
        "name": name,
        "search_name": folded(name),
        "address": address,
        "postal_code": postal_code or place.postal_code,
        "commune": insee,
        "role": Role(role).value,
        "category": None,
        "mssante": None,
        "source": MANUAL,
        "digest": MANUAL,
        "updated_at": datetime.now(UTC),
    }
    create_directory_tables(engine)
    with engine.begin() as connection:
        table = DIRECTORY_ORGANISATION
        connection.execute(delete(table).where(table.c.id == organisation_id))
        connection.execute(insert(table).values(**row))
