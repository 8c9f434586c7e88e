"""What the admissions service can be asked to do: one dataclass per command, named in the imperative."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.admissions.domain import AdmissionFacts, Participant
from shared.contracts import TreatingTeamAssigned
from shared.errors import Unprocessable
from shared.events import EventType, Role
from shared.fhir.encounter import PatientIdentity
from shared.routing import ADMISSION_EVENTS, DISCHARGE_EVENTS

DISCHARGE_ENDPOINT = "/discharge/fhir/$process-message"

# --- a hospital's admission message -----------------------------------------------------------------------


@dataclass(frozen=True)
class AdmissionMessage:
    message_id: str
    fingerprint: str
    event_type: EventType
    caller_org_id: str
    facts: AdmissionFacts
    request_header: dict[str, Any] = field(repr=False)


class RecordAdmission(AdmissionMessage):
    pass


class ReviseAdmission(AdmissionMessage):
    pass


class CancelAdmission(AdmissionMessage):
    pass


# --- the care-team registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrolPatient:
    team_org_id: str
    patient: PatientIdentity
    participants: tuple[Participant, ...]
    name: str | None = None
    postal_code: str | None = None  # from a contained Patient's address, when the team sends one


@dataclass(frozen=True)
class EndEnrolment:
    team_org_id: str
    careteam_id: str


@dataclass(frozen=True)
class ChangeReferent:
    team_org_id: str
    careteam_id: str
    referent: Participant


@dataclass(frozen=True)
class ReferToDac:
    """The patient's treating team or admitting hospital refers the patient to the DAC of their territory."""

    referrer_org_id: str
    referrer_role: Role
    patient: PatientIdentity
    dac_org_id: str


@dataclass(frozen=True)
class AnswerTeamChange:
    """The current treating team accepts or declines another team's request to take the patient over."""

    team_org_id: str
    change_id: str
    accept: bool


@dataclass(frozen=True)
class ExpireTeamChanges:
    """Hand over every change-of-team request left unanswered past its deadline."""

    limit: int = 100


@dataclass(frozen=True)
class CloseDacCase:
    dac_org_id: str
    case_id: str


@dataclass(frozen=True)
class RecordConsent:
    patient: PatientIdentity
    opposed: bool
    recorded_by: str
    recorder_role: Role = Role.TEAM


@dataclass(frozen=True)
class SetTerritory:
    postal_code: str
    cpts_org_id: str | None
    dac_org_id: str | None


@dataclass(frozen=True)
class AssignTreatingTeam:
    """From the bus: a team the CPTS oriented the patient to accepted (relais.registry.updates)."""

    message_id: str
    update: TreatingTeamAssigned


def command_for(event_type: EventType) -> type[AdmissionMessage]:
    """The command an intake event asks for; a discharge or another service's event is a 422."""
    if event_type in DISCHARGE_EVENTS:
        raise Unprocessable(
            f"{event_type.value} is a discharge message: send it to {DISCHARGE_ENDPOINT}",
            issue_code="not-supported",
            expression=["Bundle.entry[0].resource.eventCoding"],
        )
    if event_type not in ADMISSION_EVENTS:
        raise Unprocessable(
            f"{event_type.value} is not an admission event; this endpoint takes admissions, "
            "their corrections and cancellations",
            issue_code="not-supported",
            expression=["Bundle.entry[0].resource.eventCoding"],
        )
    commands: dict[EventType, type[AdmissionMessage]] = {
        EventType.ADMISSION_RECORDED: RecordAdmission,
        EventType.ADMISSION_CORRECTED: ReviseAdmission,
        EventType.ADMISSION_CANCELLED: CancelAdmission,
    }
    return commands[event_type]


# --- a team's patient list (panel) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PanelLine:
    """One patient of an uploaded list, or why its line cannot be read (never quoting the line)."""

    position: str  # where it was: "Group.member[3]" or "line 4"
    patient: PatientIdentity | None = None
    postal_code: str | None = None
    refused: str | None = None


@dataclass(frozen=True)
class UpdatePanel:
    """A team's list: `add` enrols (or confirms) each line, `replace` also lets go of the group's other patients,
    `remove` lets go of the lines' patients."""

    team_org_id: str
    group_id: str
    mode: str  # add | replace | remove
    lines: tuple[PanelLine, ...]


@dataclass(frozen=True)
class ExpirePanels:
    """Patients not confirmed by an upload within the configured period leave their team's list."""

    limit: int = 500
