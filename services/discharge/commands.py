"""What the discharge service can be asked to do: one dataclass per command, named in the imperative."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.discharge.domain import ADMISSIONS_ENDPOINT, DischargeFacts
from shared.errors import Unprocessable
from shared.events import EventType
from shared.mirrors import MirrorCareTeam, MirrorTerritory
from shared.routing import ADMISSION_EVENTS, DISCHARGE_EVENTS

# --- a hospital's discharge message ---------------------------------------------------------------------


@dataclass(frozen=True)
class DischargeMessage:
    message_id: str
    fingerprint: str
    event_type: EventType
    caller_org_id: str
    facts: DischargeFacts
    request_header: dict[str, Any] = field(repr=False)


class RecordDischarge(DischargeMessage):
    pass


class ReviseDischarge(DischargeMessage):
    pass


class CancelDischarge(DischargeMessage):
    pass


# --- the handoff Task and the follow-up plan -------------------------------------------------------------


@dataclass(frozen=True)
class AcceptHandoff:
    task_id: str
    team_org_id: str


@dataclass(frozen=True)
class DeclineHandoff:
    task_id: str
    team_org_id: str
    reason: str


@dataclass(frozen=True)
class CancelHandoff:
    task_id: str
    hospital_org_id: str
    reason: str | None = None


@dataclass(frozen=True)
class AssignOrientation:
    """The CPTS proposes a treating team for a patient it orients."""

    task_id: str
    cpts_org_id: str
    team_org_id: object  # as sent: the handler checks it names a registered team


@dataclass(frozen=True)
class CompleteFollowup:
    task_id: str
    team_org_id: str
    done_at: datetime | None = None


# --- durable deadlines -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FireNextTimer:
    """Fire the earliest due deadline, if any, on behalf of `worker`."""

    worker: str


@dataclass(frozen=True)
class SetTimerAside:
    """Mark a deadline whose effect keeps failing as done with outcome 'error', so later ones still fire."""

    timer_id: str
    worker: str


# The registry mirror (relais.careteam): the kernel's commands, shared with snp (shared.mirrors).


Command = (
    DischargeMessage
    | AcceptHandoff
    | DeclineHandoff
    | CancelHandoff
    | AssignOrientation
    | CompleteFollowup
    | FireNextTimer
    | SetTimerAside
    | MirrorCareTeam
    | MirrorTerritory
)


def command_for(event_type: EventType) -> type[DischargeMessage]:
    """The command an intake event asks for; an admission is a 422 naming the admissions endpoint."""
    if event_type in ADMISSION_EVENTS:
        raise Unprocessable(
            f"{event_type.value} is an admission message: send it to {ADMISSIONS_ENDPOINT}",
            issue_code="not-supported",
            expression=["Bundle.entry[0].resource.eventCoding"],
        )
    if event_type not in DISCHARGE_EVENTS:
        raise Unprocessable(
            f"{event_type.value} is not a discharge event; this endpoint takes discharges, "
            "their corrections and cancellations",
            issue_code="not-supported",
            expression=["Bundle.entry[0].resource.eventCoding"],
        )
    commands: dict[EventType, type[DischargeMessage]] = {
        EventType.DISCHARGE_RECORDED: RecordDischarge,
        EventType.DISCHARGE_CORRECTED: ReviseDischarge,
        EventType.DISCHARGE_CANCELLED: CancelDischarge,
    }
    return commands[event_type]
