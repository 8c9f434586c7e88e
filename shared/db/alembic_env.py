"""The body of every service's Alembic env.py: online migrations on the engine the caller passes in."""

from __future__ import annotations

from collections.abc import Iterable

from alembic import context
from sqlalchemy import MetaData, Table


def run_migrations(tables: Iterable[Table]) -> None:
    config = context.config
    engine = config.attributes["engine"]
    schema = config.attributes.get("schema")
    tables = tuple(tables)
    wanted = {table.name for table in tables}
    target = next(iter(tables)).metadata if tables else MetaData()

    def include_object(obj, name, type_, reflected, compare_to):
        # All SQLModel tables share one MetaData: each service migrates only its own and the kernel's.
        if type_ == "table":
            return name in wanted
        table = getattr(obj, "table", None)
        return table is None or table.name in wanted

    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target,
            include_object=include_object,
            version_table="alembic_version",
            version_table_schema=schema,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
