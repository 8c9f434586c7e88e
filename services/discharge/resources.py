"""FHIR views of this service's state: the handoff and follow-up items as Tasks, validated on build."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from services.discharge.adapters.orm import DischargeRow, FollowupRow, HandoffRow, OrientationRow
from services.discharge.domain import (
    FOLLOWUP_SYSTEM,
    ORGANISATION_SYSTEM,
    PATIENT_KEY_SYSTEM,
    TASK_CODE_SYSTEM,
    FollowupStatus,
    HandoffStatus,
    as_utc,
    fhir_instant,
)
from shared.events import EventType
from shared.fhir.models import Task, to_json
from shared.identifiers import FINESS
from shared.minimise import followup_code, minimise

HANDOFF_DISPLAY = "Relai hôpital → équipe traitante (référent hospitalier vers référent de l'équipe)"
ORIENTATION_DISPLAY = "Orientation vers une équipe traitante (CPTS)"


def _encounter_identifier(discharge: DischargeRow) -> dict[str, str]:
    system, _, value = discharge.encounter_key.partition("|")
    return {"system": system, "value": value}


def _common(discharge: DischargeRow) -> dict[str, Any]:
    return {
        "focus": {"type": "Encounter", "identifier": _encounter_identifier(discharge)},
        "for": {
            "type": "Patient",
            "identifier": {"system": discharge.patient_system, "value": discharge.patient_value},
        },
        "requester": {
            "type": "Organization",
            "identifier": {"system": FINESS, "value": discharge.hospital_org_id},
        },
    }


def _owner(org_id: str | None) -> dict[str, Any]:
    return (
        {"owner": {"type": "Organization", "identifier": {"system": ORGANISATION_SYSTEM, "value": org_id}}}
        if org_id
        else {}
    )


def without_owner(task: dict[str, Any]) -> dict[str, Any]:
    """The Task without its owner: what a hospital gets before the team has made itself known."""
    return {k: v for k, v in task.items() if k != "owner"}


def orientation_for_hospital(task: dict[str, Any]) -> dict[str, Any]:
    """The orientation Task as the discharging hospital sees it: the team the CPTS proposed stays hidden until it
    accepts (as a handoff's owner does); the treating team that accepted is shown."""
    outputs = [o for o in task.get("output", []) if o.get("type", {}).get("text") != "proposed-team"]
    hidden = {k: v for k, v in task.items() if k != "output"}
    return {**hidden, "output": outputs} if outputs else hidden


def _validated(task: dict[str, Any]) -> dict[str, Any]:
    return to_json(Task.model_validate(task))


def _no_referent_inputs(discharge: DischargeRow) -> list[dict[str, Any]]:
    """No reachable referent was named: the hospital organisation is the contact, and the Task says why."""
    return [
        {"type": {"text": "hospital-referent-missing"}, "valueString": "no hospital referent was named"},
        {
            "type": {"text": "hospital-contact"},
            "valueReference": {
                "type": "Organization",
                "identifier": {"system": FINESS, "value": discharge.hospital_org_id},
            },
        },
    ]



def _pseudonymous(discharge: DischargeRow) -> dict[str, Any]:
    """`for` of a Task read outside the care team: the patient's pseudonymous key, never the INS or the NDA."""
    return {"for": {"type": "Patient", "identifier": {"system": PATIENT_KEY_SYSTEM, "value": discharge.patient_key}}}


def _minimised_inputs(discharge: DischargeRow, followups: Sequence[FollowupRow]) -> list[dict[str, Any]]:
    """Age band and commune through the minimisation whitelist, then the follow-up needs as codes and deadlines."""
    minimal = minimise(
        {},
        event_type=EventType.ORIENTATION_REQUESTED,
        patient_key=discharge.patient_key,
        commune=discharge.commune,
        birth_date=date.fromisoformat(discharge.birth_date) if discharge.birth_date else None,
        occurred_at=discharge.discharged_at,
        recorded_at=discharge.recorded_at,
    )
    inputs: list[dict[str, Any]] = [
        {"type": {"text": name}, "valueString": minimal[name]}
        for name in ("age_band", "commune")
        if minimal.get(name)
    ]
    inputs.append({"type": {"text": "discharged-at"}, "valueDateTime": fhir_instant(discharge.discharged_at)})
    # The hospital's wording of an item may be free text: only a code of Relais' value set and the deadline leave
    # the care team (rows stored before the value set was enforced are checked again here).
    inputs.extend(
        {
            "type": {"coding": [{"system": FOLLOWUP_SYSTEM, "code": followup_code(FOLLOWUP_SYSTEM, item.code)}],
                     "text": "followup"},
            "valueDateTime": fhir_instant(item.due_at),
        }
        for item in followups
        if item.status == FollowupStatus.REQUESTED
    )
    return inputs


def _referent_inputs(referent: dict[str, Any]) -> list[dict[str, Any]]:
    inputs: list[dict[str, Any]] = []
    if referent.get("name"):
        inputs.append({"type": {"text": "hospital-referent"}, "valueString": referent["name"]})
    if referent.get("phone"):
        inputs.append(
            {
                "type": {"text": "hospital-referent-phone"},
                "valueContactPoint": {"system": "phone", "value": referent["phone"]},
            }
        )
    if referent.get("mssante"):
        inputs.append(
            {
                "type": {"text": "hospital-referent-mssante"},
                "valueContactPoint": {"system": "email", "value": referent["mssante"]},
            }
        )
    return inputs


def sees_full_handoff(handoff: HandoffRow) -> bool:
    """A handoff the CPTS proposed shows the full discharge only once the team accepted it."""
    if handoff.orientation_id is None:
        return True
    # team_referent is set on acceptance: a handoff cancelled after it was accepted stays readable in full.
    return handoff.status == HandoffStatus.ACCEPTED or handoff.team_referent is not None


def handoff_task(
    handoff: HandoffRow,
    discharge: DischargeRow,
    letter: str | None = None,
    followups: Sequence[FollowupRow] = (),
) -> dict[str, Any]:
    if not sees_full_handoff(handoff):
        return _decision_task(handoff, discharge, followups)
    referent = handoff.hospital_referent or {}
    inputs = _referent_inputs(referent)
    if not referent.get("phone") and not referent.get("mssante"):
        inputs.extend(_no_referent_inputs(discharge))
    if letter:
        inputs.append(
            {
                "type": {"text": "liaison-letter"},
                "valueReference": {"reference": letter, "type": "DocumentReference"},
            }
        )
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": handoff.id,
        "status": handoff.status,
        "intent": "order",
        "priority": "urgent" if discharge.complex_case else "routine",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "handoff", "display": HANDOFF_DISPLAY}]},
        **_common(discharge),
        **_owner(handoff.team_org_id),
        "authoredOn": fhir_instant(handoff.requested_at),
        "lastModified": fhir_instant(handoff.updated_at),
        "restriction": {"period": {"end": fhir_instant(handoff.expires_at)}},
    }
    if handoff.business_status:
        task["businessStatus"] = {"text": handoff.business_status}
    if handoff.reason:
        task["statusReason"] = {"text": handoff.reason}
    if inputs:
        task["input"] = inputs
    if handoff.team_referent:
        team_ref = handoff.team_referent
        task["output"] = [
            {
                "type": {"text": "team-referent"},
                "valueString": team_ref.get("name") or team_ref.get("rpps") or "référent",
            }
        ]
    return _validated(task)


def _decision_task(handoff: HandoffRow, discharge: DischargeRow, followups: Sequence[FollowupRow]) -> dict[str, Any]:
    """What a proposed team sees before it accepts: enough to decide, nothing that identifies the patient."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": handoff.id,
        "status": handoff.status,
        "intent": "order",
        "priority": "urgent" if discharge.complex_case else "routine",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "handoff", "display": HANDOFF_DISPLAY}]},
        **_pseudonymous(discharge),
        "requester": {"type": "Organization", "identifier": {"system": FINESS, "value": discharge.hospital_org_id}},
        **_owner(handoff.team_org_id),
        "authoredOn": fhir_instant(handoff.requested_at),
        "lastModified": fhir_instant(handoff.updated_at),
        "restriction": {"period": {"end": fhir_instant(handoff.expires_at)}},
        "basedOn": [{"reference": f"Task/{handoff.orientation_id}"}],
        "input": _minimised_inputs(discharge, followups) + _referent_inputs(handoff.hospital_referent or {}),
    }
    if handoff.business_status:
        task["businessStatus"] = {"text": handoff.business_status}
    return _validated(task)


def orientation_task(
    orientation: OrientationRow, discharge: DischargeRow, followups: Sequence[FollowupRow] = ()
) -> dict[str, Any]:
    """The CPTS's orientation Task: minimised facts only (the CPTS is not in the care team)."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": orientation.id,
        "status": orientation.status,
        "intent": "order",
        "priority": "urgent" if discharge.complex_case else "routine",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "orientation", "display": ORIENTATION_DISPLAY}]},
        **_pseudonymous(discharge),
        "requester": {"type": "Organization", "identifier": {"system": FINESS, "value": orientation.hospital_org_id}},
        **_owner(orientation.cpts_org_id),
        "authoredOn": fhir_instant(orientation.requested_at),
        "lastModified": fhir_instant(orientation.updated_at),
        "statusReason": {"coding": [{"system": TASK_CODE_SYSTEM, "code": orientation.reason}]},
        "input": _minimised_inputs(discharge, followups),
    }
    outputs: list[dict[str, Any]] = []
    if orientation.team_org_id:
        outputs.append(
            {
                "type": {"text": "proposed-team" if orientation.status != "completed" else "treating-team"},
                "valueReference": {
                    "type": "Organization",
                    "identifier": {"system": ORGANISATION_SYSTEM, "value": orientation.team_org_id},
                },
            }
        )
    if orientation.handoff_id:
        outputs.append({"type": {"text": "handoff"}, "valueReference": {"reference": f"Task/{orientation.handoff_id}"}})
    if outputs:
        task["output"] = outputs
    if orientation.attempts and orientation.status == "requested":
        task["businessStatus"] = {"text": "returned"}
    return _validated(task)


def followup_task(item: FollowupRow, discharge: DischargeRow, team_org_id: str | None) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": item.id,
        "status": item.status,
        "intent": "plan",
        "code": {"coding": [{"system": FOLLOWUP_SYSTEM, "code": item.code, "display": item.display}]},
        "description": item.display,
        **_common(discharge),
        **_owner(team_org_id),
        "authoredOn": fhir_instant(discharge.recorded_at),
        "lastModified": fhir_instant(item.updated_at),
        "restriction": {"period": {"end": fhir_instant(item.due_at)}},
    }
    if item.handoff_id:
        task["partOf"] = [{"reference": f"Task/{item.handoff_id}"}]
    if item.completed_at:
        task["executionPeriod"] = {"end": fhir_instant(item.completed_at)}
    elif item.status == FollowupStatus.REQUESTED and item.escalation_level is not None:
        task["businessStatus"] = {"text": "overdue" if item.escalation_level == 0 else "overdue-escalated"}
    elif item.status == FollowupStatus.REQUESTED and as_utc(item.due_at) <= as_utc(discharge.recorded_at):
        task["businessStatus"] = {"text": "late-on-arrival"}  # due before Relais heard of it: not escalated
    return _validated(task)
