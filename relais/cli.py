"""The `relais` command: run, serve, org, db."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from relais.services import SERVICE_NAMES, bootstrapper
from shared.auth import Directory
from shared.events import Role
from shared.logs import configure_logging
from shared.settings import SETTINGS_BY_SERVICE, RelaisSettings

if TYPE_CHECKING:
    from shared.directory.importer import ImportReport

app = typer.Typer(help="Relais: the ville–hôpital coordination backend.", no_args_is_help=True)
org_app = typer.Typer(help="Organisations and their API tokens.", no_args_is_help=True)
db_app = typer.Typer(help="Databases and migrations.", no_args_is_help=True)
outbox_app = typer.Typer(help="Outbox rows the bus could never take.", no_args_is_help=True)
member_app = typer.Typer(help="The people (RPPS) who act for an organisation in the pages.", no_args_is_help=True)
org_app.add_typer(member_app, name="member")
app.add_typer(org_app, name="org")
app.add_typer(db_app, name="db")
app.add_typer(outbox_app, name="outbox")
console = Console()


def _configure_logging() -> None:
    level = os.environ.get("RELAIS_LOG_LEVEL", "INFO").upper()
    # The log policy (shared/logs.py) keeps the broker client at WARNING even at DEBUG: it logs record values.
    configure_logging(level)
    # Migrations narrate every step at INFO; keep the console for what an operator needs.
    if level != "DEBUG":
        logging.getLogger("alembic").setLevel(logging.WARNING)


def _directory() -> Directory:
    settings = RelaisSettings()
    return Directory(settings.resolved_auth_url, settings.auth_database_schema)


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


Hl7Facilities = Annotated[
    list[str] | None, typer.Option("--hl7-facility", help="Hospital: an HL7 v2 sending facility (MSH-4); repeatable")
]
Hl7Networks = Annotated[
    list[str] | None,
    typer.Option("--hl7-network", help="Hospital: a network its plain-MLLP sender connects from (CIDR); repeatable"),
]
Mssante = Annotated[str | None, typer.Option("--mssante", help="The organisation's MSSanté address")]


def _checked_networks(networks: list[str] | None) -> list[str] | None:
    from ipaddress import ip_network

    for network in networks or ():
        try:
            ip_network(network, strict=False)
        except ValueError:
            raise typer.BadParameter(f"{network!r} is not a network (CIDR)", param_hint="--hl7-network") from None
    return networks


def _checked_mssante(address: str | None) -> str | None:
    if address is None:
        return None
    from shared.mssante_address import MssanteAddressError, check_mssante_address

    try:
        return check_mssante_address(address, RelaisSettings().mssante_domains)
    except MssanteAddressError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mssante") from None


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


@org_app.command("add")
def org_add(
    role: Annotated[Role, typer.Option(help="The organisation's role")],
    id: Annotated[str, typer.Option("--id", help="Identifier (a hospital's FINESS, a team's FINESS or SIRET...)")],
    name: Annotated[str, typer.Option(help="Display name")],
    hl7_facility: Hl7Facilities = None,
    hl7_network: Hl7Networks = None,
    mssante: Mssante = None,
) -> None:
    """Register an organisation and print its bearer token (shown once, stored hashed)."""
    from shared.errors import Conflict

    try:
        token = _directory().add(
            role,
            id,
            name,
            hl7_facilities=hl7_facility or (),
            hl7_networks=_checked_networks(hl7_network) or (),
            mssante=_checked_mssante(mssante),
        )
    except Conflict:
        console.print(
            f"[red]{id} is already registered[/] (or one of its HL7 facilities is another's): "
            f"change it with `relais org update --id {id}`, or get a new token with `relais org rotate --id {id}`.",
            soft_wrap=True,  # one line, whatever the terminal's width
        )
        raise typer.Exit(1) from None
    console.print(f"[green]registered[/] {role.value} {id} ({name}). Its token, shown once:")
    typer.echo(token)


@org_app.command("update")
def org_update(
    id: Annotated[str, typer.Option("--id", help="The organisation to change")],
    name: Annotated[str | None, typer.Option(help="New display name")] = None,
    hl7_facility: Hl7Facilities = None,
    hl7_network: Hl7Networks = None,
    mssante: Mssante = None,
) -> None:
    """Change an organisation's name, HL7 v2 facilities and networks (each list given replaces the stored one),
    or MSSanté address ("" removes it). Its token is unchanged."""
    from shared.errors import Conflict, NotFound

    try:
        _directory().update(
            id,
            name=name,
            hl7_facilities=hl7_facility,
            hl7_networks=_checked_networks(hl7_network),
            mssante=_checked_mssante(mssante) if mssante else mssante,
        )
    except (Conflict, NotFound) as exc:
        console.print(f"[red]{exc.diagnostics}[/]")
        raise typer.Exit(1) from None
    console.print(f"[green]updated[/] {id}")


@org_app.command("rotate")
def org_rotate(
    id: Annotated[str, typer.Option("--id", help="The organisation whose token to replace")],
) -> None:
    """Replace an organisation's token; the old one stops working at once (within the 30 s cache)."""
    from shared.errors import NotFound

    try:
        token = _directory().rotate(id)
    except NotFound:
        console.print(f"[red]{id} is not registered[/]: register it with `relais org add --id {id} …`.", soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"[green]rotated[/] the token of {id}. Its new token, shown once:")
    typer.echo(token)


@member_app.command("add")
def org_member_add(
    id: Annotated[str, typer.Option("--id", help="The organisation the person acts for")],
    rpps: Annotated[str, typer.Option(help="The person's RPPS (11 digits), as Pro Santé Connect names them")],
    name: Annotated[str, typer.Option(help="The person's name, as shown in the pages and the audit")],
) -> None:
    """Let a person (by RPPS) sign in to the pages with Pro Santé Connect and act for this organisation."""
    from shared.errors import Conflict, NotFound
    from shared.members import Members

    try:
        Members(_directory()).add(id, rpps, name)
    except (Conflict, NotFound, ValueError) as exc:
        console.print(f"[red]{getattr(exc, 'diagnostics', exc)}[/]")
        raise typer.Exit(1) from None
    console.print(f"[green]added[/] {name} (RPPS {rpps}) to {id}")


@member_app.command("list")
def org_member_list(id: Annotated[str, typer.Option("--id", help="The organisation")]) -> None:
    """The people who may act for an organisation."""
    from shared.members import Members

    table = Table("rpps", "name")
    for membership in Members(_directory()).of(id):
        table.add_row(membership.rpps, membership.name)
    console.print(table)


@org_app.command("list")
def org_list() -> None:
    """List registered organisations (never their tokens)."""
    table = Table("id", "role", "name")
    for principal in _directory().list():
        table.add_row(principal.organisation_id, principal.role.value, principal.name)
    console.print(table)


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


# --- the health directory (docs/directory.md) ---------------------------------------------------------------

directory_app = typer.Typer(
    help="The health directory: organisations and their members, from the public extractions.", no_args_is_help=True
)
app.add_typer(directory_app, name="directory")


@directory_app.command("import")
def directory_import(
    rpps: Annotated[
        Path | None,
        typer.Option(help="Annuaire Santé PS_LibreAcces_Personne_activite file", exists=True, dir_okay=False),
    ] = None,
    finess: Annotated[
        Path | None,
        typer.Option(
            help="FINESS etalab establishments extraction (etalab_cs1100507_stock)", exists=True, dir_okay=False
        ),
    ] = None,
    mssante: Annotated[
        Path | None,
        typer.Option(
            help="Annuaire Santé Extraction_Correspondance_MSSante file (with --rpps): members' own MSSanté boxes",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    prune: Annotated[
        bool, typer.Option(help="Delete stored organisations the files no longer name (a full extraction only)")
    ] = False,
) -> None:
    """Load the public directory extractions (idempotent: a re-import updates), then print what changed."""
    import time

    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from shared.directory.extracts import NotAnExtraction
    from shared.directory.importer import import_directory

    if rpps is None and finess is None:
        raise typer.BadParameter("give --rpps FILE, --finess FILE or both")
    if mssante is not None and rpps is None:
        raise typer.BadParameter("--mssante completes the members of --rpps: give both", param_hint="--mssante")
    settings = RelaisSettings()
    directory = _directory()
    total = sum(path.stat().st_size for path in (rpps, finess, mssante) if path is not None)
    started = time.perf_counter()
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("reading the extractions", total=total)
        try:
            report = import_directory(
                directory.engine,
                finess=finess,
                rpps=rpps,
                mssante=mssante,
                mssante_domains=settings.mssante_domains,
                prune=prune,
                on_bytes=lambda size: progress.advance(task, size),
            )
        except NotAnExtraction as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(1) from None
    directory.clear_cache()
    _print_import_report(report, time.perf_counter() - started)


@directory_app.command("add")
def directory_add(
    id: Annotated[str, typer.Option("--id", help="The organisation's id (as registered with `relais org add`)")],
    name: Annotated[str, typer.Option(help="Display name")],
    role: Annotated[Role, typer.Option(help="The organisation's role")],
    commune: Annotated[str, typer.Option(help="INSEE code of its commune (where a CPTS finds it)")],
    postal_code: Annotated[str | None, typer.Option(help="Its postal code (default: the commune's first)")] = None,
    address: Annotated[str | None, typer.Option(help="Street address")] = None,
) -> None:
    """Add or replace a directory entry by hand, for an organisation the public extractions lack."""
    from shared.directory.entries import set_entry

    try:
        set_entry(
            _directory().engine, id, name=name, role=role, insee=commune, postal_code=postal_code, address=address
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--commune/--postal-code") from None
    console.print(f"[green]directory entry set[/] {id} ({name}, {commune})")


def _print_import_report(report: ImportReport, seconds: float) -> None:
    table = Table("", "added", "changed", "unchanged", "removed")
    for label, counts in (("organisations", report.organisations), ("members", report.members)):
        table.add_row(label, str(counts.added), str(counts.changed), str(counts.unchanged), str(counts.removed))
    console.print(table)
    console.print(
        f"{report.lines} lines in {seconds:.1f} s; {report.skipped} not kept (categories and practitioners Relais "
        f"does not route to); {report.registered_renamed} registered organisation(s) renamed from the directory"
    )
    if report.absent and not report.organisations.removed:
        console.print(f"{report.absent} stored organisation(s) absent from these files (kept; --prune deletes them)")
    if report.malformed_count:
        console.print(f"[yellow]{report.malformed_count} malformed line(s), not imported:[/]")
        for item in report.malformed[:20]:
            console.print(f"  {item.file} line {item.line}: {item.reason}")


if __name__ == "__main__":
    app()
