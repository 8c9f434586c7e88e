"""Typed bus payloads between services (docs/events.md): built here and parsed here, nowhere else.

Three contracts travel between services:

* ``NotificationData``: the value of a ``relais.notify.*`` record, one per recipient organisation. It is built
  only by :func:`build_notification`, which applies the recipient's detail level through the minimisation
  whitelist (``shared.minimise``), and parsed only by :func:`parse_notification`.
* ``CareTeamChanged`` and ``TerritoryChanged``: the registry's snapshots on ``relais.careteam``, mirrored by the
  services that route by care team or territory (``shared.mirrors``, whose one ordering rule starts with
  :func:`newer_wins` on the registry's times).

Every contract carries ``v`` (its version); a reader accepts the versions it knows and ignores fields it does not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.events import (
    TOPIC_CARETEAM,
    TOPIC_NOTIFY_CPTS,
    TOPIC_NOTIFY_DAC,
    TOPIC_NOTIFY_TEAM,
    TOPIC_REGISTRY_UPDATES,
    EventType,
    Role,
)
from shared.minimise import assert_minimised, minimise, organisational
from shared.routing import Detail, Recipient

CONTRACT_VERSION = 1
KNOWN_VERSIONS = frozenset({1})
NOTIFY_TOPICS: tuple[str, ...] = (TOPIC_NOTIFY_TEAM, TOPIC_NOTIFY_CPTS, TOPIC_NOTIFY_DAC)
# Roles a notification may be addressed to (the SAS and administrators read no feed).
NOTIFIED_ROLES = frozenset({Role.TEAM, Role.HOSPITAL, Role.CPTS, Role.DAC})

# uuid5 namespace of notification ids: the same source, recipient and event always give the same id.
_NOTIFICATION_NAMESPACE = uuid.UUID("5b0f8a55-2c1e-4c5e-9a57-6d1c1f0b7a10")


class InvalidContract(ValueError):
    """A bus value that breaks its contract; no retry will fix it (the consumer sends it to the DLQ)."""


class _Contract(BaseModel):
    # Tolerant reader: fields a newer writer adds are ignored; the ones we rely on are checked.
    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = CONTRACT_VERSION

    @field_validator("v")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in KNOWN_VERSIONS:
            raise ValueError(f"unknown contract version {value}")
        return value


# --- notifications ------------------------------------------------------------------------------------------


class NotificationData(_Contract):
    """The value of one ``relais.notify.*`` record (key: the recipient organisation)."""

    recipient: str = Field(min_length=1, max_length=100)
    role: Role
    detail: Detail
    event: str = Field(min_length=1, max_length=64)
    patient_key: str | None = Field(default=None, max_length=64)
    sender: str | None = Field(default=None, max_length=100)
    subject: str | None = Field(default=None, max_length=200)
    payload: dict[str, Any]

    @field_validator("patient_key", "sender", "subject", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    def to_data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class About:
    """What a notification is about, in the only terms its builder may use.

    ``subject`` is the sender's business identifier (an encounter number, say): it reaches full-detail
    recipients only. ``reference`` is an opaque Relais identifier that every other recipient gets instead.
    """

    patient_key: str
    reference: str
    subject: str | None = None
    commune: str | None = None
    birth_date: date | None = None


@dataclass(frozen=True)
class OutgoingNotification:
    message_id: str
    topic: str
    key: str
    type: str
    data: dict[str, Any]


def notification_id(source_id: str, recipient: Recipient, event: EventType | str) -> str:
    """The id of the notification of ``event`` from the source message ``source_id`` to ``recipient``."""
    name = "|".join((source_id, recipient.organisation_id, recipient.role.value, EventType(event).value))
    return str(uuid.uuid5(_NOTIFICATION_NAMESPACE, name))


def build_notification(
    recipient: Recipient,
    event: EventType,
    *,
    source_id: str,
    about: About,
    sender: str | None,
    occurred_at: datetime | str,
    recorded_at: datetime | str,
    full: Callable[[str], dict[str, Any]] | None = None,
) -> OutgoingNotification:
    """The one way a notification is built: the recipient's detail level decides what leaves.

    ``full`` builds the clinical payload (given the notification id) and is called for full-detail recipients
    only, so clinical data is never even assembled for a minimised or organisational one.
    """
    message_id = notification_id(source_id, recipient, event)
    minimal = minimise(
        {},
        event_type=event,
        patient_key=about.patient_key,
        commune=about.commune,
        birth_date=about.birth_date,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
    )
    payload: dict[str, Any]
    if recipient.detail is Detail.FULL:
        payload = full(message_id) if full is not None else dict(minimal)
        subject = about.subject or about.reference
    elif recipient.detail is Detail.MINIMISED:
        payload = dict(minimal)
        subject = about.reference
    else:
        payload = organisational(minimal)
        subject = about.reference
    data = NotificationData(
        recipient=recipient.organisation_id,
        role=recipient.role,
        detail=recipient.detail,
        event=event.value,
        # Organisational detail carries no patient data at all, not even the pseudonym.
        patient_key=None if recipient.detail is Detail.ORGANISATIONAL else about.patient_key,
        sender=sender,
        subject=subject,
        payload=payload,
    )
    return OutgoingNotification(message_id, recipient.topic, recipient.organisation_id, event.value, data.to_data())


def parse_notification(topic: str, data: Mapping[str, Any]) -> NotificationData:
    """Check one ``relais.notify.*`` value against the contract; raise InvalidContract if it breaks it."""
    if topic not in NOTIFY_TOPICS:
        raise InvalidContract(f"{topic} is not a notify topic")
    try:
        parsed = NotificationData.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidContract(_first_error(exc)) from None
    if parsed.role not in NOTIFIED_ROLES:
        raise InvalidContract(f"role must be one of {sorted(r.value for r in NOTIFIED_ROLES)}")
    # The CPTS is not a care provider: a full clinical payload on its topic is a routing bug, never stored.
    if topic == TOPIC_NOTIFY_CPTS and parsed.detail is Detail.FULL:
        raise InvalidContract("a full notification on relais.notify.cpts is refused (CPTS gets minimised data)")
    payload = parsed.payload
    if parsed.detail is Detail.FULL:
        if payload.get("resourceType") != "Bundle" or payload.get("type") != "message":
            raise InvalidContract("a full notification carries a FHIR message Bundle")
    elif any(isinstance(value, dict | list) for value in payload.values()):
        raise InvalidContract("a minimised payload is a flat object of scalar values")
    return parsed


def check_minimised_payload(data: NotificationData) -> None:
    """Re-apply the whitelist on receipt: a minimised or organisational payload must pass it (defence in depth)."""
    if data.detail is Detail.FULL:
        return
    assert_minimised(data.payload)


# --- the care-team registry on relais.careteam ------------------------------------------------------------


class Referent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    rpps: str | None = None
    name: str | None = None
    telecom: list[dict[str, Any]] = Field(default_factory=list)


class DacStay(BaseModel):
    """A DAC case a hospital opened by referral: it covers that hospital's one stay, nothing else of the patient."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    hospital: str = Field(min_length=1, max_length=100)
    encounter: str = Field(min_length=1, max_length=300)
    dac_org_id: str = Field(min_length=1, max_length=100)


class CareTeamChanged(_Contract):
    """The patient's whole coordination context after a change (key: patient key)."""

    event: Literal["careteam.changed"] = "careteam.changed"
    change: str = "unknown"
    patient_key: str = Field(min_length=1, max_length=64)
    careteam_id: str | None = None
    team_org_id: str | None = None
    status: Literal["active", "inactive"] = "inactive"
    referent: Referent | None = None
    consent_opposed: bool = False
    dac_case_open: bool = False  # a case that covers the patient (a team's referral)
    dac_org_id: str | None = None
    dac_stays: list[DacStay] = Field(default_factory=list, max_length=50)  # cases that cover one stay each
    postal_code: str | None = Field(default=None, max_length=10)
    at: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return value or "inactive"


class TerritoryChanged(_Contract):
    """Which CPTS and DAC cover a postal code (key: the postal code)."""

    event: Literal["territory.changed"] = "territory.changed"
    postal_code: str = Field(min_length=1, max_length=10)
    cpts_org_id: str | None = None
    dac_org_id: str | None = None
    at: str | None = None


RegistryChange = CareTeamChanged | TerritoryChanged
REGISTRY_TOPIC = TOPIC_CARETEAM


def registry_record(change: RegistryChange) -> tuple[str, str, str, dict[str, Any]]:
    """(topic, key, type, data) of a registry change, ready for the outbox."""
    key = change.patient_key if isinstance(change, CareTeamChanged) else change.postal_code
    return REGISTRY_TOPIC, key, change.event, change.model_dump(mode="json")


def parse_registry_change(event_type: str, data: Mapping[str, Any]) -> RegistryChange | None:
    """The registry change a ``relais.careteam`` record carries; None for a type this reader does not know."""
    model: type[CareTeamChanged] | type[TerritoryChanged]
    if event_type == EventType.CARETEAM_CHANGED.value:
        model = CareTeamChanged
    elif event_type == EventType.TERRITORY_CHANGED.value:
        model = TerritoryChanged
    else:
        return None
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidContract(_first_error(exc)) from None


def newer_wins(incoming_at: str | None, stored_at: str | None) -> bool:
    """Whether a mirror applies a snapshot: an older one than the one stored is ignored (per-key order may break
    across rebalances); equal or unknown times apply, since snapshots are whole and idempotent."""
    if not incoming_at or not stored_at:
        return True
    try:
        return datetime.fromisoformat(incoming_at) >= datetime.fromisoformat(stored_at)
    except ValueError:
        return incoming_at >= stored_at


# --- registry updates other services ask for, on relais.registry.updates ------------------------------------


class TreatingTeamAssigned(_Contract):
    """A team accepted a patient the CPTS oriented to it: the registry makes it the treating team (key: patient key).

    Carries the patient's identifier because the registry keys a CareTeam's subject on it; the topic is read by
    admissions only (deploy/kafka/acls.yaml).
    """

    event: Literal["careteam.assigned"] = "careteam.assigned"
    assignment_id: str = Field(min_length=1, max_length=36)  # the accepted handoff: one assignment, once
    patient_key: str = Field(min_length=1, max_length=64)
    subject_system: str = Field(min_length=1, max_length=200)
    subject_value: str = Field(min_length=1, max_length=100)
    team_org_id: str = Field(min_length=1, max_length=100)
    cpts_org_id: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=10)
    at: str | None = None


def registry_update_record(update: TreatingTeamAssigned) -> tuple[str, str, str, dict[str, Any]]:
    """(topic, key, type, data) of a registry update, ready for the outbox."""
    return TOPIC_REGISTRY_UPDATES, update.patient_key, update.event, update.model_dump(mode="json")


def parse_registry_update(event_type: str, data: Mapping[str, Any]) -> TreatingTeamAssigned | None:
    """The update a ``relais.registry.updates`` record asks for; None for a type this reader does not know."""
    if event_type != EventType.CARETEAM_ASSIGNED.value:
        return None
    try:
        return TreatingTeamAssigned.model_validate(dict(data))
    except ValidationError as exc:
        raise InvalidContract(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    # Field names and the kind of error only: never the offending value, which may be patient data.
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "value"
    return f"{where}: {error.get('msg', 'invalid')}"
