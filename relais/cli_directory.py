"""`relais directory`: the health directory, from the public extractions (docs/directory.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from relais.cli_common import console
from relais.cli_common import directory as _directory
from shared.events import Role
from shared.settings import RelaisSettings

if TYPE_CHECKING:
    from shared.directory.importer import ImportReport

# --- the health directory (docs/directory.md) ---------------------------------------------------------------

directory_app = typer.Typer(
    help="The health directory: organisations and their members, from the public extractions.", no_args_is_help=True
)


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

