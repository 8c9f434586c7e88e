"""Audit of refusals: written in a short transaction of their own, so the refused work still rolls back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from shared.db.uow import UnitOfWork

log = logging.getLogger(__name__)

# The audit writer cuts every value to its column (AuditEntry.bounded): recorded, never refused.
_ACTION_MAX = 100


class RefusalRecorder(Protocol):
    def __call__(
        self,
        action: str,
        *,
        organisation_id: str | None,
        role: str | None,
        resource: str | None,
        reason: str,
        detail: dict[str, Any] | None = None,
        outcome: str = "denied",
    ) -> None: ...


def refusal_recorder(unit_of_work: Callable[[], UnitOfWork]) -> RefusalRecorder:
    """A recorder writing each refusal in its own transaction of the service's database."""

    def record(
        action: str,
        *,
        organisation_id: str | None,
        role: str | None,
        resource: str | None,
        reason: str,
        detail: dict[str, Any] | None = None,
        outcome: str = "denied",
    ) -> None:
        try:
            with unit_of_work() as uow:
                uow.audit.record(
                    action,
                    outcome=outcome,
                    organisation_id=organisation_id,
                    role=role,
                    resource=resource,
                    detail={"reason": reason, **(detail or {})},
                )
                uow.commit()
        except Exception as exc:  # noqa: BLE001 - the refusal stands even when its audit row cannot be written
            # The error class only: a database error's text may quote the row it could not write.
            log.error("could not audit a refusal of %s: %s", action[:_ACTION_MAX], type(exc).__name__)

    return record
