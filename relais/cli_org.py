"""`relais org`: organisations, their tokens, HL7 v2 bindings, MSSanté addresses and members."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from relais.cli_common import console
from relais.cli_common import directory as _directory
from shared.events import Role
from shared.settings import RelaisSettings

org_app = typer.Typer(help="Organisations and their API tokens.", no_args_is_help=True)
member_app = typer.Typer(help="The people (RPPS) who act for an organisation in the pages.", no_args_is_help=True)
org_app.add_typer(member_app, name="member")


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
