"""Every command of the discharge service and its one handler: `handler(command, uow, deps)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from services.discharge.commands import (
    AcceptHandoff,
    AssignOrientation,
    CancelDischarge,
    CancelHandoff,
    CompleteFollowup,
    DeclineHandoff,
    FireNextTimer,
    MirrorCareTeam,
    MirrorTerritory,
    RecordDischarge,
    ReviseDischarge,
    SetTimerAside,
)
from services.discharge.handlers.discharges import cancel_discharge, record_discharge, revise_discharge
from services.discharge.handlers.followups import complete_followup
from services.discharge.handlers.handoffs import accept_handoff, cancel_handoff, decline_handoff
from services.discharge.handlers.mirrors import mirror_careteam, mirror_territory
from services.discharge.handlers.orientation import assign_orientation
from services.discharge.handlers.timers import TimerFailed, fire_next_timer, set_timer_aside

# Typed as Any in the map: each handler takes its own command type, the bus looks it up by that type.
HANDLERS: dict[type, Callable[[Any, Any, Any], Any]] = {
    RecordDischarge: record_discharge,
    ReviseDischarge: revise_discharge,
    CancelDischarge: cancel_discharge,
    AcceptHandoff: accept_handoff,
    DeclineHandoff: decline_handoff,
    CancelHandoff: cancel_handoff,
    AssignOrientation: assign_orientation,
    CompleteFollowup: complete_followup,
    FireNextTimer: fire_next_timer,
    SetTimerAside: set_timer_aside,
    MirrorCareTeam: mirror_careteam,
    MirrorTerritory: mirror_territory,
}

__all__ = ["HANDLERS", "TimerFailed"]
