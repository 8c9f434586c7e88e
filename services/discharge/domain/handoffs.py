"""The handoff state machine (requested -> accepted | rejected | expired | cancelled): pure state changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.discharge.domain.model import HandoffStatus
from shared.errors import Conflict, Unprocessable
from shared.events import EventType

# (status, action) -> new status: the whole handoff state machine.
HANDOFF_TRANSITIONS: dict[tuple[str, str], str] = {
    (HandoffStatus.REQUESTED, "accept"): HandoffStatus.ACCEPTED,
    (HandoffStatus.REQUESTED, "decline"): HandoffStatus.REJECTED,
    (HandoffStatus.REQUESTED, "cancel"): HandoffStatus.CANCELLED,
    (HandoffStatus.ACCEPTED, "cancel"): HandoffStatus.CANCELLED,
    (HandoffStatus.REQUESTED, "expire"): HandoffStatus.EXPIRED,
}
HANDOFF_EVENTS: dict[str, EventType] = {
    "accept": EventType.HANDOFF_ACCEPTED,
    "decline": EventType.HANDOFF_DECLINED,
    "expire": EventType.HANDOFF_EXPIRED,
    "cancel": EventType.HANDOFF_CANCELLED,
}


def next_handoff_status(status: str, action: str, task_id: str) -> str:
    new = HANDOFF_TRANSITIONS.get((status, action))
    if new is None:
        raise Conflict(f"Task {task_id} is {status}: it cannot be {action}ed now", expression=["Task.status"])
    return new


@dataclass(frozen=True)
class HandoffChange:
    """What one action does to a handoff; the handler applies it to the stored row."""

    status: str
    business_status: str | None  # None keeps the current one
    reason: str | None  # None keeps the current one
    event: EventType
    # The team let go (declined or nobody answered): its open follow-ups wait for the next team, the CPTS is asked.
    team_let_go: bool


# What each action leaves in Task.businessStatus (accept leaves it as it was).
_HANDOFF_BUSINESS_STATUS: dict[str, str] = {
    "decline": "declined",
    "expire": "expired",
    "cancel": "cancelled-by-hospital",
}


def handoff_change(status: str, action: str, task_id: str, reason: str | None = None) -> HandoffChange:
    """The state change `action` makes from `status`; a move the state machine forbids is a 409."""
    return HandoffChange(
        status=next_handoff_status(status, action, task_id),
        business_status=_HANDOFF_BUSINESS_STATUS.get(action),
        reason=reason or None,
        event=HANDOFF_EVENTS[action],
        team_let_go=action in ("decline", "expire"),
    )


def is_repeated_handoff_action(status: str, action: str) -> bool:
    """A retried accept, decline or cancel finds the handoff already where it would put it."""
    return action != "expire" and HANDOFF_TRANSITIONS.get((HandoffStatus.REQUESTED, action)) == status


def is_live_handoff(status: str) -> bool:
    """A handoff still in play: asked and not answered, or accepted."""
    return status in (HandoffStatus.REQUESTED, HandoffStatus.ACCEPTED)


def declined_teams(handoffs: Iterable[tuple[str, str]]) -> set[str]:
    """Teams that let go of the patient, from (team, status) of the discharge's handoffs."""
    failed = {HandoffStatus.REJECTED, HandoffStatus.EXPIRED}
    return {team for team, status in handoffs if status in failed}


def check_decline_reason(reason: str | None) -> str:
    if not reason or not reason.strip():
        raise Unprocessable("declining a handoff needs a reason", expression=["Parameters.parameter.reason"])
    return reason.strip()[:1000]
