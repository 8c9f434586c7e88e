"""What handlers read from the registry (routing context, the care-team snapshot) and how they publish it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from services.admissions.adapters.orm import DacCase
from services.admissions.domain import case_covers
from services.admissions.uow import AdmissionsUnitOfWork
from shared.carecircle import CircleFacts
from shared.contracts import About, CareTeamChanged, TerritoryChanged, build_notification, registry_record
from shared.events import EventType, Role
from shared.identifiers import RPPS
from shared.routing import PatientContext, Recipient


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def notify(
    uow: AdmissionsUnitOfWork,
    recipients: Iterable[Recipient],
    event: EventType,
    *,
    source_id: str,
    about: About,
    sender: str | None,
    occurred_at: datetime | str,
    now: datetime,
    full: Callable[[str], dict[str, Any]],
) -> None:
    """One outbox row per recipient, built by the kernel's contract (the detail level picks the payload)."""
    for recipient in recipients:
        out = build_notification(
            recipient,
            event,
            source_id=source_id,
            about=about,
            sender=sender,
            occurred_at=occurred_at,
            recorded_at=instant(now),
            full=full,
        )
        uow.outbox.add(out.topic, out.key, out.type, out.data, message_id=out.message_id)


def covering_case(
    uow: AdmissionsUnitOfWork, key: str, hospital: str | None = None, encounter_key: str | None = None
) -> DacCase | None:
    """The open DAC case that covers this event: a team's referral covers the patient, a hospital's only the
    stay it referred (never another hospital's, nor a later stay)."""
    cases = uow.dac_cases.open_for_patient(key)
    return next(
        (c for c in cases if case_covers(c.referrer_role, c.referred_by, c.encounter_key, hospital, encounter_key)),
        None,
    )


def patient_context(
    uow: AdmissionsUnitOfWork,
    key: str,
    hospital: str | None,
    postal_code: str | None,
    *,
    local_only: bool = False,
    encounter_key: str | None = None,
) -> PatientContext:
    """What routing needs, read from the registry: team, the DAC case covering this stay, consent, territory.

    A patient known only by a local identifier has no consent Relais can look up: the care team only.
    """
    team = uow.careteams.active_for_patient(key)
    case = covering_case(uow, key, hospital, encounter_key)
    consent = uow.consents.get(key)
    territory = uow.territories.get(postal_code) if postal_code else None
    return PatientContext(
        team_org_id=team.team_org_id if team else None,
        hospital_org_id=hospital,
        cpts_org_id=territory.cpts_org_id if territory else None,
        dac_org_id=case.dac_org_id if case else (territory.dac_org_id if territory else None),
        dac_case_open=case is not None,
        consent_opposed=bool(consent and consent.opposed),
        identity_verified=not local_only,
    )


def circle_facts(uow: AdmissionsUnitOfWork, key: str) -> CircleFacts:
    """Who is linked to the patient, read from the registry, for the kernel's care-circle policy."""
    team = uow.careteams.active_for_patient(key)
    postal_code = uow.patients.postal_code(key)
    territory = uow.territories.get(postal_code) if postal_code else None
    return CircleFacts(
        team_org_id=team.team_org_id if team else None,
        hospitals=uow.admissions.hospitals_for_patient(key),
        dac_cases=uow.dac_cases.open_dacs_for_patient(key),
        cpts_org_id=territory.cpts_org_id if territory else None,
    )


def careteam_context(uow: AdmissionsUnitOfWork, key: str) -> dict[str, Any]:
    """The patient's whole coordination context, read from the registry (docs/events.md "Care-team mirror").

    Every `careteam.changed` is built here, whatever caused it, so mirrors always get the same snapshot.
    """
    team = uow.careteams.latest_for_patient(key)
    active = team is not None and team.status == "active"
    referent = uow.careteams.current_referent(team.id) if active and team is not None else None
    consent = uow.consents.get(key)
    case = covering_case(uow, key)  # mirrors learn of patient-wide cases only: a stay's case stays here
    return {
        "patient_key": key,
        "careteam_id": team.id if team is not None else None,
        "team_org_id": team.team_org_id if active and team is not None else None,
        "status": "active" if active else "inactive",
        "referent": (
            {
                "rpps": referent.member_value if referent.member_system == RPPS else None,
                "name": referent.member_display,
                "telecom": list(referent.telecom or []),
            }
            if referent is not None
            else None
        ),
        "consent_opposed": bool(consent and consent.opposed),
        "dac_case_open": case is not None,
        "dac_org_id": case.dac_org_id if case is not None else None,
        "dac_stays": [
            {"hospital": c.referred_by, "encounter": c.encounter_key, "dac_org_id": c.dac_org_id}
            for c in uow.dac_cases.open_for_patient(key)
            if c.referrer_role == Role.HOSPITAL.value and c.referred_by and c.encounter_key
        ],
        "postal_code": uow.patients.postal_code(key),
    }


def careteam_changed(uow: AdmissionsUnitOfWork, key: str, change: str, now: datetime) -> None:
    """Publish the patient's current context on relais.careteam (key: patient key); flushes first."""
    uow.careteams.flush()
    snapshot = CareTeamChanged.model_validate({**careteam_context(uow, key), "change": change, "at": instant(now)})
    uow.outbox.add(*registry_record(snapshot))


def territory_changed(uow: AdmissionsUnitOfWork, change: TerritoryChanged) -> None:
    """Publish which CPTS and DAC cover a postal code (key: the postal code), mirrored by the routing services."""
    uow.outbox.add(*registry_record(change))


def learn_postal_code(uow: AdmissionsUnitOfWork, key: str, postal_code: str | None, now: datetime) -> bool:
    """Record the patient's last known postal code; True when that changed the patient's context."""
    return bool(postal_code) and uow.patients.record_postal_code(key, str(postal_code), now)
