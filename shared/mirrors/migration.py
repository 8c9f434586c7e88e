"""Alembic steps that bring a service's mirror tables to the shared schema (shared.mirrors.tables), rows kept.

A service's migration names its two tables; what each table lacks is read from the database, so one step serves
every service whatever its tables looked like before (discharge's and snp's differed)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel import SQLModel
from sqlmodel.main import get_column_from_field

from shared.mirrors.tables import CareTeamMirror, TerritoryMirror


def _shape(mixin: type[SQLModel], name: str) -> sa.Table:
    """The shared schema of one mirror table, under the service's table name (a MetaData apart from the models')."""
    columns = []
    for key, field in mixin.model_fields.items():
        column = get_column_from_field(field)
        column.name = column.key = key
        columns.append(column)
    return sa.Table(name, sa.MetaData(), *columns)


def upgrade_to_shared_schema(careteam_table: str, territory_table: str) -> None:
    for mixin, name in ((CareTeamMirror, careteam_table), (TerritoryMirror, territory_table)):
        _upgrade_table(_shape(mixin, name))


def _upgrade_table(target: sa.Table) -> None:
    inspector = sa.inspect(op.get_bind())
    present = {column["name"]: column for column in inspector.get_columns(target.name)}
    indexes = {index["name"] for index in inspector.get_indexes(target.name)}
    with op.batch_alter_table(target.name) as batch:
        for column in target.columns:
            found = present.get(column.name)
            if found is None:
                batch.add_column(sa.Column(column.name, column.type, nullable=column.nullable))
            elif _length(found["type"]) != _length(column.type):
                batch.alter_column(column.name, existing_type=found["type"], type_=column.type)
        for index in target.indexes:
            if index.name and index.name not in indexes:
                batch.create_index(str(index.name), [c.name for c in index.columns], unique=bool(index.unique))


def _length(column_type: object) -> int | None:
    return getattr(column_type, "length", None)
