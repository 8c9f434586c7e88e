"""Tables of the imported directory, in the auth database beside `organisation` (created like it, not by Alembic).

An imported organisation never has a token: registering one stays `relais org add`. Both share the id (a FINESS,
a SIRET or the Annuaire Santé's technical structure id), which is how a registered organisation gets its name,
address and commune from the import.
"""

from __future__ import annotations

import unicodedata

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table
from sqlalchemy.engine import Engine

from shared.db.engine import create_tables

metadata = MetaData()

DIRECTORY_ORGANISATION = Table(
    "directory_organisation",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("id_system", String(20), nullable=False),  # finess | siret | rpps-structure
    Column("name", String(300), nullable=False),
    Column("search_name", String(300), nullable=False, index=True),  # folded: lower case, no accents
    Column("address", String(300), nullable=True),
    Column("postal_code", String(10), nullable=True, index=True),
    Column("commune", String(5), nullable=True, index=True),  # INSEE code (COG)
    Column("role", String(20), nullable=True, index=True),  # a Relais role, or none for what Relais does not route to
    Column("category", String(10), nullable=True),  # FINESS category (categetab)
    Column("mssante", String(254), nullable=True),
    Column("source", String(20), nullable=False),  # finess | rpps | finess+rpps
    Column("digest", String(32), nullable=False),  # of the imported fields: what makes a re-import a no-op
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

DIRECTORY_MEMBER = Table(
    "directory_member",
    metadata,
    Column("organisation_id", String(100), primary_key=True),
    Column("rpps", String(11), primary_key=True),
    Column("family_name", String(200), nullable=False),
    Column("given_name", String(200), nullable=True),
    Column("profession_code", String(10), nullable=True),
    Column("profession", String(200), nullable=True),
    Column("mssante", String(254), nullable=True),
    Column("digest", String(32), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_directory_member_rpps", "rpps"),
)


def folded(text: str) -> str:
    """Lower case without accents, so "epinal" finds "ÉPINAL" (the search and the stored name fold alike)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).lower().split())


def create_directory_tables(engine: Engine) -> None:
    create_tables(engine, metadata)
