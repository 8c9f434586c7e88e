"""What snp writes to the outbox: its domain events and, through the kernel's contracts, its notifications."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.snp.adapters.orm import AppointmentRow, RequestRow
from services.snp.domain import communes
from services.snp.uow import SnpUnitOfWork
from shared.contracts import About, build_notification
from shared.events import TOPIC_SNP, EventType
from shared.fhir.builders import RELAIS_ENDPOINT, message_bundle
from shared.routing import PatientContext, route

# Ids minted here are stable: re-publishing a slot or re-sending an event never creates a second one.
NAMESPACE = uuid.UUID("6f1d2c1e-7a57-4c1b-9a7e-5e0d1f3b8a11")


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def own_team(uow: SnpUnitOfWork, request: RequestRow) -> str | None:
    mirror = uow.mirrors.careteam(request.patient_key)
    return mirror.team_org_id if mirror and mirror.status == "active" else None


def territory_of(uow: SnpUnitOfWork, postal_codes: tuple[str, ...]) -> str | None:
    """A commune's territory is the CPTS that covers one of its postal codes (territory mirror)."""
    for postal_code in postal_codes:
        row = uow.mirrors.territory(postal_code)
        if row is not None and row.cpts_org_id:
            return row.cpts_org_id
    return None


def patient_context(uow: SnpUnitOfWork, request: RequestRow, team_org_id: str | None = None) -> PatientContext:
    """Who is involved, as the mirrors know it: the routing table decides who is told."""
    mirror = uow.mirrors.careteam(request.patient_key)
    commune = communes().get(request.commune)
    return PatientContext(
        team_org_id=team_org_id or own_team(uow, request),
        hospital_org_id=None,
        cpts_org_id=territory_of(uow, commune.postal_codes) if commune else None,
        dac_org_id=None,
        consent_opposed=bool(mirror and mirror.consent_opposed),
    )


def notify(
    uow: SnpUnitOfWork,
    event: EventType,
    ctx: PatientContext,
    *,
    source_id: str,
    request: RequestRow,
    reference: str,
    focus: list[dict[str, Any]],
    now: datetime,
    occurred_at: datetime,
) -> int:
    """One notification per recipient the routing table names; the kernel applies each detail level."""
    about = About(patient_key=request.patient_key, reference=reference, commune=request.commune)
    recipients = route(event, ctx)
    for recipient in recipients:
        outgoing = build_notification(
            recipient,
            event,
            source_id=source_id,
            about=about,
            sender=request.sas_org_id,
            occurred_at=occurred_at,
            recorded_at=now,
            full=lambda message_id: message_bundle(
                event, source_endpoint=RELAIS_ENDPOINT, focus=focus, message_id=message_id
            ),
        )
        uow.outbox.add(outgoing.topic, outgoing.key, outgoing.type, outgoing.data, message_id=outgoing.message_id)
    return len(recipients)


def domain_event(
    uow: SnpUnitOfWork,
    event: EventType,
    request: RequestRow,
    source_id: str,
    appointment: AppointmentRow | None = None,
) -> None:
    data: dict[str, Any] = {
        "request_id": request.id,
        "state": request.state,
        "urgency": request.urgency,
        "reason": request.reason,
        "commune": request.commune,
        "territory": request.territory,
        "deadline_at": request.deadline_at.isoformat(),
    }
    if appointment is not None:
        data |= {
            "appointment_id": appointment.id,
            "status": appointment.status,
            "effecteur": appointment.org_id,
            "start": appointment.start.isoformat(),
            "via": appointment.via,
        }
    uow.outbox.add(TOPIC_SNP, request.patient_key, event.value, data, message_id=stable_id(source_id))
