"""The deadline: a request still unplaced when its time is up expires and is escalated to the CPTS."""

from __future__ import annotations

from services.snp.commands import ExpireRequest
from services.snp.deps import Deps
from services.snp.domain import RequestState
from services.snp.handlers.publish import domain_event, notify, patient_context
from services.snp.resources import service_request_resource
from services.snp.uow import SnpUnitOfWork
from shared.events import EventType


def expire_request(command: ExpireRequest, uow: SnpUnitOfWork, deps: Deps) -> bool:
    """True when this call expired the request; False when it was placed or another worker got there first."""
    now = deps.clock()
    with uow:
        request = uow.requests.get(command.request_id)
        if request is None or request.deadline_at > now:
            return False
        # The conditional update is the claim: a second worker gets rowcount 0 and does nothing.
        if not uow.requests.move(request.id, RequestState.WAITING, RequestState.EXPIRED, expired_at=now):
            return False
        uow.session.refresh(request)
        fact = uow.facts.get(request.id)
        if fact is not None:
            fact.state = RequestState.EXPIRED.value
        source_id = f"snp:{request.id}:{EventType.SNP_EXPIRED.value}"
        domain_event(uow, EventType.SNP_EXPIRED, request, source_id)
        notify(
            uow,
            EventType.SNP_EXPIRED,
            patient_context(uow, request),
            source_id=source_id,
            request=request,
            reference=f"ServiceRequest/{request.id}",
            focus=[service_request_resource(request)],
            now=now,
            occurred_at=request.deadline_at,
        )
        uow.commit()
        return True
