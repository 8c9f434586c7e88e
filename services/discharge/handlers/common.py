"""What several handlers do alike: routing context, notifications through the kernel's contract, the domain
event, durable deadlines."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from services.discharge import domain
from services.discharge.adapters.orm import DischargeRow, TimerRow
from services.discharge.domain import Policy
from services.discharge.uow import DischargeUnitOfWork
from services.discharge.views import mirror_state, territory_state
from shared.contracts import About, build_notification
from shared.events import TOPIC_DISCHARGE, EventType
from shared.fhir.builders import message_bundle
from shared.identifiers import INS_SYSTEMS
from shared.routing import PatientContext, Recipient


def routing_context(
    uow: DischargeUnitOfWork,
    discharge: DischargeRow,
    *,
    team_org_id: str | None = None,
    pin_team: bool = False,
    handoff_failed: bool = False,
    escalation_level: int = 0,
) -> PatientContext:
    mirror = mirror_state(uow, discharge.patient_key)
    postal = discharge.postal_code or (mirror.postal_code if mirror else None)
    ctx = domain.patient_context(
        mirror=mirror,
        territory=territory_state(uow, postal),
        hospital_org_id=discharge.hospital_org_id,
        complex_case=discharge.complex_case,
        team_org_id=team_org_id,
        handoff_failed=handoff_failed,
        escalation_level=escalation_level,
        encounter_key=discharge.encounter_key,
    )
    # A patient known only by a local identifier gets nothing beyond the care team, at every step.
    ctx = replace(ctx, identity_verified=discharge.patient_system in INS_SYSTEMS)
    if pin_team and team_org_id is None:
        # The team that held the patient has let go: do not fall back on the mirror's (same) team.
        ctx = replace(ctx, team_org_id=None)
    return ctx


def about(discharge: DischargeRow, reference: str, subject: str | None = None) -> About:
    """What a notification is about: full-detail recipients see `subject` (default: the opaque `reference`),
    everyone else only `reference`, a Relais id."""
    return About(
        patient_key=discharge.patient_key,
        reference=reference,
        subject=subject or reference,
        commune=discharge.commune,
        birth_date=date.fromisoformat(discharge.birth_date) if discharge.birth_date else None,
    )


def notify(
    uow: DischargeUnitOfWork,
    recipients: Iterable[Recipient],
    event: EventType,
    *,
    source_id: str,
    about: About,
    sender: str | None,
    occurred_at: datetime,
    now: datetime,
    full: Callable[[], dict[str, Any]],
) -> list[Recipient]:
    """One notification per recipient, shaped by its detail level; the full payload is built once, if needed."""
    full_bundle = functools.cache(full)
    sent = list(recipients)
    for recipient in sent:
        out = build_notification(
            recipient,
            event,
            source_id=source_id,
            about=about,
            sender=sender,
            occurred_at=domain.fhir_instant(occurred_at),
            recorded_at=domain.fhir_instant(now),
            full=lambda _notification_id: full_bundle(),
        )
        uow.outbox.add(out.topic, out.key, out.type, out.data, message_id=out.message_id)
    return sent


def domain_event(uow: DischargeUnitOfWork, event: str, source_id: str, discharge: DischargeRow, **extra: Any) -> None:
    # Domain topics carry that something happened, never the clinical why.
    data = {
        "event": event,
        "discharge_id": discharge.id,
        "patient_key": discharge.patient_key,
        "hospital": discharge.hospital_org_id,
        "encounter": discharge.encounter_key,
        **extra,
    }
    uow.outbox.add(
        TOPIC_DISCHARGE,
        discharge.patient_key,
        event,
        data,
        message_id=domain.derived_id(source_id, "domain", event),
    )


def task_bundle(event: EventType, task: dict[str, Any], policy: Policy, sender_org: str | None) -> dict[str, Any]:
    sender = {"identifier": {"system": domain.ORGANISATION_SYSTEM, "value": sender_org}} if sender_org else None
    return message_bundle(event, source_endpoint=policy.source_endpoint, focus=[task], sender=sender)


def schedule(uow: DischargeUnitOfWork, kind: str, subject_id: str, level: int, due_at: datetime) -> None:
    uow.timers.add(
        TimerRow(
            id=domain.derived_id(subject_id, kind, str(level)),
            kind=kind,
            subject_id=subject_id,
            level=level,
            due_at=due_at,
        )
    )
