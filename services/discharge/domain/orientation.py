"""The orientation state machine: the CPTS finds a treating team for a patient who has none (or lost it).

requested (waiting for the CPTS) -> in-progress (a team was proposed) -> completed (the team accepted);
a decline or an expiry sends it back to requested with the reason; a cancelled discharge cancels it.
"""

from __future__ import annotations

import re

from services.discharge.domain.model import OrientationStatus
from shared.errors import Conflict, Unprocessable
from shared.events import EventType

ORIENTATION_TRANSITIONS: dict[tuple[str, str], str] = {
    (OrientationStatus.REQUESTED, "assign"): OrientationStatus.IN_PROGRESS,
    (OrientationStatus.IN_PROGRESS, "accept"): OrientationStatus.COMPLETED,
    (OrientationStatus.IN_PROGRESS, "return"): OrientationStatus.REQUESTED,
    (OrientationStatus.REQUESTED, "cancel"): OrientationStatus.CANCELLED,
    (OrientationStatus.IN_PROGRESS, "cancel"): OrientationStatus.CANCELLED,
}
ORIENTATION_EVENTS: dict[str, EventType] = {
    "request": EventType.ORIENTATION_REQUESTED,
    "assign": EventType.ORIENTATION_ASSIGNED,
    "accept": EventType.ORIENTATION_ACCEPTED,
    "return": EventType.ORIENTATION_RETURNED,
}
# Why an orientation was opened or returned: coded, never the team's free text (the CPTS is not in the care team).
ORIENTATION_REASONS = frozenset({"no-team", "handoff-declined", "handoff-expired"})
# An organisation id as `relais org add` accepts it: one token, no spaces, bounded.
_ORG_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


def next_orientation_status(status: str, action: str, task_id: str) -> str:
    new = ORIENTATION_TRANSITIONS.get((status, action))
    if new is None:
        raise Conflict(f"Task {task_id} is {status}: it cannot be {action}ed now", expression=["Task.status"])
    return new


def return_reason(handoff_action: str) -> str:
    """The coded reason an orientation comes back to the CPTS with, from what the team's handoff became."""
    return {"decline": "handoff-declined", "expire": "handoff-expired"}[handoff_action]


def check_team_id(value: object) -> str:
    """The `team` parameter of $assign: one organisation id, not free text."""
    if not isinstance(value, str) or not _ORG_ID.match(value.strip()):
        raise Unprocessable(
            "team must name the team's organisation id", expression=["Parameters.parameter[team]"]
        )
    return value.strip()


def is_repeated_assign(status: str, current_team: str | None, team: str) -> bool:
    """A retried $assign finds the orientation already proposed to that same team."""
    return status == OrientationStatus.IN_PROGRESS and current_team == team
