"""The `relais` command: run, serve, demo, example, purge, disclosures; the org, directory, db and outbox groups."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from relais.cli_common import console
from relais.cli_common import directory as _directory
from relais.cli_directory import directory_app
from relais.cli_org import org_app
from relais.services import SERVICE_NAMES, bootstrapper
from shared.logs import configure_logging
from shared.settings import SETTINGS_BY_SERVICE, RelaisSettings

app = typer.Typer(help="Relais: the ville–hôpital coordination backend.", no_args_is_help=True)
db_app = typer.Typer(help="Databases and migrations.", no_args_is_help=True)
outbox_app = typer.Typer(help="Outbox rows the bus could never take.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(directory_app, name="directory")
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")


def _configure_logging() -> None:
    level = os.environ.get("RELAIS_LOG_LEVEL", "INFO").upper()
    # The log policy (shared/logs.py) keeps the broker client at WARNING even at DEBUG: it logs record values.
    configure_logging(level)
    # Migrations narrate every step at INFO; keep the console for what an operator needs.
    if level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
def run(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Where SQLite files live (RELAIS_DATA_DIR)")] = None,
    mllp_port: Annotated[
        int | None, typer.Option(help="Also take HL7 v2 (PAM France) over MLLP on this port (RELAIS_MLLP_*)")
    ] = None,
) -> None:
    """Every service in one process, on SQLite and the embedded log unless configured otherwise."""
    from relais.combined import combined_app
    from shared.api.server import run_server

    _configure_logging()
    if data_dir is not None:
        os.environ["RELAIS_DATA_DIR"] = str(data_dir)
    directory = _directory()
    services = []
    with console.status("starting services") as status:
        for name in SERVICE_NAMES:
            status.update(f"starting {name} (migrating its database)")
            services.append(bootstrapper(name)(directory=directory))
    settings = RelaisSettings()
    bus = f"Kafka at {settings.kafka_bootstrap_servers}" if settings.uses_kafka else "the embedded log"
    console.print(f"Relais on http://{host}:{port} — data in {settings.data_dir.resolve()}, bus: {bus}")
    if mllp_port is not None:
        _attach_mllp(services, mllp_port, host)
    if not directory.list():
        console.print("No organisation yet: add one with `relais org add --role hospital --id FINESS --name NAME`.")
    run_server(combined_app(services), host=host, port=port, settings=settings)


def _attach_mllp(services: list, port: int, host: str) -> None:
    from relais.hl7 import attach_mllp
    from shared.hl7v2.settings import MllpSettings

    mllp = MllpSettings(port=port, host=host)
    attach_mllp(services, mllp)
    scheme = "MLLP over TLS" if mllp.tls else "MLLP"
    console.print(f"HL7 v2 ({scheme}) on {host}:{port}: senders bound by `relais org add --hl7-facility/--hl7-network`")


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="admissions, discharge, snp or notifications")],
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8000,
) -> None:
    """One service, configured by the environment (database URL, Kafka)."""
    from shared.api.server import run_server

    _configure_logging()
    if service not in SERVICE_NAMES:
        raise typer.BadParameter(f"choose one of {', '.join(SERVICE_NAMES)}", param_hint="SERVICE")
    instance = bootstrapper(service)()
    if service == "admissions":
        from services.admissions.entrypoints.hl7 import attach_distributed_mllp

        # The HL7 v2 door is hosted by admissions (docs/hl7v2.md): on when RELAIS_MLLP_PORT is set.
        if attach_distributed_mllp(instance):
            console.print("HL7 v2 over MLLP: RELAIS_MLLP_PORT (discharges forwarded to the discharge service)")
    run_server(instance.app, host=host, port=port, settings=instance.runtime.settings)


@app.command()
def demo(
    url: Annotated[
        list[str] | None,
        typer.Option(help="Drive running services: http://HOST:PORT for all, or SERVICE=URL (repeatable)"),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="In-process mode: where SQLite files live (default: a temporary directory)")
    ] = None,
    auth_database_url: Annotated[
        str | None, typer.Option(help="With --url: the auth database (default RELAIS_AUTH_DATABASE_URL)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each notification")] = 30.0,
    keep_running: Annotated[
        bool, typer.Option(help="In-process mode: leave the territory running and print sign-in tokens for the pages")
    ] = False,
    port: Annotated[int, typer.Option(help="In-process mode: the loopback port to serve on (0: a free one)")] = 0,
) -> None:
    """Seed a Vosges territory, play patient journeys over HTTP, show what each organisation received."""
    from relais.demo import DemoError, run_demo

    if keep_running and url:
        raise typer.BadParameter("--keep-running keeps the in-process territory; it does not apply to --url")
    if port and url:
        raise typer.BadParameter("--port is where the in-process territory listens; it does not apply to --url")
    try:
        run_demo(
            urls=url,
            data_dir=data_dir,
            auth_database_url=auth_database_url,
            timeout=timeout,
            console=console,
            keep_running=keep_running,
            port=port,
        )
    except DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        raise typer.Exit(1) from None


@app.command()
def example(
    path: Annotated[Path, typer.Argument(help="An example message, e.g. docs/examples/discharge.json")],
) -> None:
    """Print an example message with its dates moved so that its stay ended yesterday (pipe it to curl)."""
    import json
    from datetime import date

    from relais.examples import dated

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot read {path}[/]: {type(exc).__name__}")
        raise typer.Exit(1) from None
    typer.echo(json.dumps(dated(document, date.today()), ensure_ascii=False, indent=2))


@db_app.command("upgrade")
def db_upgrade(
    services: Annotated[list[str] | None, typer.Argument(help="Services to migrate (default: all)")] = None,
) -> None:
    """Apply each service's Alembic migrations to its own database."""
    from shared.db import migrate
    from shared.db.engine import make_engine

    for name in services or SERVICE_NAMES:
        settings = SETTINGS_BY_SERVICE[name]()
        engine = make_engine(settings.resolved_database_url, settings.database_schema)
        with console.status(f"migrating {name}"):
            migrate.upgrade(name, engine, settings.database_schema)
        engine.dispose()
        console.print(f"[green]✓[/] {name}: {settings.resolved_database_url.split('@')[-1]}")


@db_app.command("revision", hidden=True)
def db_revision(
    service: Annotated[str, typer.Argument()],
    message: Annotated[str, typer.Option("-m", "--message")],
) -> None:
    """Autogenerate a migration for one service (developers)."""
    from shared.db import migrate
    from shared.db.engine import make_engine

    settings = SETTINGS_BY_SERVICE[service]()
    engine = make_engine(settings.resolved_database_url, settings.database_schema)
    migrate.upgrade(service, engine, settings.database_schema)
    migrate.revision(service, engine, message, settings.database_schema)


def _service_engine(name: str):
    from shared.db.engine import make_engine

    settings = SETTINGS_BY_SERVICE[name]()
    return settings, make_engine(settings.resolved_database_url, settings.database_schema)


@app.command()
def purge(
    services: Annotated[list[str] | None, typer.Argument(help="Services to purge (default: all)")] = None,
) -> None:
    """Delete what has done its job now (kernel and service tables; RELAIS_RETENTION_*_DAYS), as the services
    do hourly."""
    import importlib

    from shared.retention import RetentionWorker

    for name in services or SERVICE_NAMES:
        settings, engine = _service_engine(name)
        # A service's own rules (fired timers, deliveries...) live beside its tables.
        rules = getattr(importlib.import_module(f"services.{name}.adapters.orm"), "retention_rules", None)
        extra = rules(settings) if rules is not None else []
        deleted = RetentionWorker.for_settings(engine, settings, extra=extra, source=name).run_once()
        engine.dispose()
        summary = ", ".join(f"{rule} {count}" for rule, count in deleted.items())
        console.print(f"[green]✓[/] {name}: {summary}")


@outbox_app.command("dead-letters")
def outbox_dead_letters(
    services: Annotated[list[str] | None, typer.Argument(help="Services to inspect (default: all)")] = None,
) -> None:
    """List outbox rows set aside because the bus could never take them (ids and sizes, never contents)."""
    from sqlalchemy import select

    from shared.db.tables import OutboxDeadLetter

    table = Table("service", "outbox seq", "message id", "event", "bytes", "reason", "set aside at")
    for name in services or SERVICE_NAMES:
        _settings, engine = _service_engine(name)
        with engine.connect() as connection:
            rows = connection.execute(select(OutboxDeadLetter.__table__).order_by("id")).all()  # type: ignore[attr-defined]
        engine.dispose()
        for row in rows:
            table.add_row(name, str(row.outbox_seq), row.message_id, row.event_type, str(row.size), row.reason,
                          row.dead_at.isoformat())
    console.print(table)


@app.command()
def disclosures(
    patient: Annotated[str, typer.Option(help="The patient's identifier as system|value (e.g. an INS-NIR)")],
) -> None:
    """Which organisations received which event about a patient, at which detail, by which channel, and when."""
    from sqlalchemy import select

    from services.notifications.adapters.orm import DisclosureRow
    from shared.identifiers import patient_key

    system, _, value = patient.partition("|")
    if not system or not value:
        raise typer.BadParameter("give the patient as system|value", param_hint="--patient")
    settings, engine = _service_engine("notifications")
    key = patient_key(system, value, settings.secret_key)
    table_ = DisclosureRow.__table__  # type: ignore[attr-defined]
    with engine.connect() as connection:
        rows = connection.execute(select(table_).where(table_.c.patient_key == key).order_by("at", "id")).all()
    engine.dispose()
    table = Table("at", "organisation", "role", "event", "detail", "channel", "notification")
    for row in rows:
        table.add_row(row.at.isoformat(), row.org_id, row.role, row.event, row.detail, row.channel, row.notification_id)
    console.print(f"patient key {key}: {len(rows)} disclosure(s)")
    console.print(table)


if __name__ == "__main__":
    app()
