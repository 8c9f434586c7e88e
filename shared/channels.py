"""The one registration path of every outbound channel: webhooks, FHIR Backport and NdE Subscriptions, and any
channel added later (an MSSanté mailbox is one declaration: its kind, its address validator, no headers).

Each door that registers a channel goes through the same three links, in this order, and cannot build a
`Channel` any other way:
1. `check_channel`: the address by the channel's own validator (an outbound URL through the guarded client's
   policy, a mailbox through its domain rules) and the registrant's headers by one validation (reserved names
   such as Host, Content-Length, Transfer-Encoding and Relais-*, invalid names, CR/LF/NUL, at most N);
2. `admit`: one cap per organisation and channel family, counted on the live channels of the caller;
3. `may_receive`: the care-circle check of what the channel may carry: a channel about one named patient only
   ever carries events its subscriber receives as a member of the care team (full detail); anything else is not
   matched, which looks exactly like a subscription that matches nothing (DESIGN §2, the patient-data boundary).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from shared.carecircle import ALLOWED, Purpose, Share
from shared.errors import Unprocessable
from shared.events import Role
from shared.mssante_address import MssanteAddressError, check_mssante_address
from shared.outbound import MAX_HEADERS, OutboundPolicy, validate_endpoint_url, validate_headers
from shared.routing import Detail

# (address, field) -> the address to store; raises Unprocessable (422) with a text that never repeats it.
AddressValidator = Callable[[str, str], str]
Headers = Mapping[str, str] | Iterable[str] | None


class Reach(StrEnum):
    """What a channel may ever carry."""

    ORGANISATION = "organisation"  # what is routed to its organisation, at the detail it was routed with
    PATIENT = "patient"  # events about one named patient: only those its subscriber has in full (care team)


@dataclass(frozen=True)
class ChannelKind:
    """One declaration per channel: where its errors point, its headers (if any), its cap, its reach."""

    name: str
    family: str  # channels counted together against one cap ("webhooks", "subscriptions", ...)
    address_field: str
    header_field: str | None = None  # None: the channel carries no registrant headers
    max_headers: int = MAX_HEADERS
    also_reserved: frozenset[str] = frozenset()
    reach: Reach = Reach.ORGANISATION


@dataclass(frozen=True)
class Channel:
    """A channel that passed the checks: its address and headers as they will be used."""

    kind: ChannelKind
    address: str
    headers: dict[str, str] = field(default_factory=dict)

    def header_lines(self) -> list[str]:
        """The headers as FHIR `channel.header` lines ("Name: value")."""
        return [f"{name}: {value}" for name, value in self.headers.items()]


def url_validator(policy: OutboundPolicy) -> AddressValidator:
    """The guarded client's registration check of an outbound URL (every IP spelling normalised first)."""
    return lambda address, where: validate_endpoint_url(address, policy, field=where)


def mailbox_validator(allowed_domains: Iterable[str]) -> AddressValidator:
    """The one MSSanté address check (shared/mssante_address.py) as a channel address validator (422)."""
    domains = tuple(allowed_domains)

    def validate(address: str, where: str) -> str:
        try:
            return check_mssante_address(address, domains)
        except MssanteAddressError as exc:
            raise Unprocessable(f"{where}: {exc}", expression=[where]) from exc

    return validate


def check_channel(kind: ChannelKind, address: object, headers: Headers, validate_address: AddressValidator) -> Channel:
    """Link 1: the address by the channel's validator, the headers by the one header validation."""
    if not isinstance(address, str):
        raise Unprocessable(f"{kind.address_field} must be a string", expression=[kind.address_field])
    checked = validate_address(address, kind.address_field)
    return Channel(kind, checked, _headers(kind, headers))


def _headers(kind: ChannelKind, headers: Headers) -> dict[str, str]:
    if headers is None or (not isinstance(headers, str) and not headers):
        return {}
    where = kind.header_field or kind.address_field
    if kind.header_field is None:
        raise Unprocessable(f"a {kind.name} channel carries no headers", expression=[where])
    if isinstance(headers, str) or not isinstance(headers, Mapping | list | tuple):
        raise Unprocessable(f"{where} must be a list of 'Name: value'", expression=[where])
    count = len(headers)
    if count > kind.max_headers:
        raise Unprocessable(f"at most {kind.max_headers} {where} entries", expression=[where])
    return validate_headers(headers, also_reserved=kind.also_reserved, field=where)


def admit(kind: ChannelKind, live: int, cap: int) -> None:
    """Link 2: the organisation's cap of this channel family (`live` counts its live channels of the family)."""
    if live >= cap:
        raise Unprocessable(f"at most {cap} {kind.family} per organisation", expression=[kind.address_field])


def share_of(role: Role | str, detail: Detail | str) -> Share:
    """What a recipient has of the patient of one notification, read from how the notification was routed to
    it: full detail is the care team's share (the team, the hospital of its own stay, the DAC of an open case);
    anything less is not."""
    if Detail(detail) is not Detail.FULL:
        return Share.MINIMISED if Detail(detail) is Detail.MINIMISED else Share.NONE
    return {Role.TEAM: Share.FULL, Role.HOSPITAL: Share.OWN_ENCOUNTERS, Role.DAC: Share.CASE}.get(
        Role(role), Share.NONE
    )


def may_receive(kind: ChannelKind, role: Role | str, detail: Detail | str) -> bool:
    """Link 3: may a channel of this kind carry a notification routed to its organisation with this detail?"""
    if kind.reach is Reach.ORGANISATION:
        return True
    return share_of(role, detail) in ALLOWED[Purpose.SUBSCRIBE]


# --- the channels Relais offers today ------------------------------------------------------------------

WEBHOOK_CHANNEL = ChannelKind("webhook", family="webhooks", address_field="url")
BACKPORT_CHANNEL = ChannelKind(
    "subscription",
    family="live Subscriptions",
    address_field="Subscription.channel.endpoint",
    header_field="Subscription.channel.header",
)
NDE_CHANNEL = ChannelKind(
    "nde-subscription",
    family="live Subscriptions",  # one cap with the Backport Subscriptions: both are Subscriptions
    address_field="Subscription.channel.endpoint",
    header_field="Subscription.channel.header",
    reach=Reach.PATIENT,
)
# A mail names its patient (by INS), so it carries only what its organisation has in full; teams register it.
MSSANTE_CHANNEL = ChannelKind("mssante", family="MSSanté addresses", address_field="address", reach=Reach.PATIENT)
