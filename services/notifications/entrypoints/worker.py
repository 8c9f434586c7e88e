"""The delivery loop: queue heartbeats, lease due deliveries, POST them through the sender, record the outcome.

Per target (webhook or subscription) only the oldest pending delivery is ever claimed, so each endpoint
receives in order; targets are independent, so a dead or slow endpoint only holds its own queue and at
most one of the pool's threads (for at most one attempt deadline) at a time, and one organisation holds at
most `webhook_workers_per_organisation` threads, so its slow endpoints never delay another organisation's.
Every state change goes through the message bus.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from services.notifications import views
from services.notifications.adapters.sender import Sender
from services.notifications.commands import ClaimDueDeliveries, QueueHeartbeats, RecordDeliveryAttempt
from services.notifications.domain import TARGET_GONE, Attempt, Claimed, channel_headers, delivery_headers
from services.notifications.messagebus import MessageBus

log = logging.getLogger(__name__)


class DeliveryWorker:
    def __init__(self, bus: MessageBus, sender: Sender, wakeup: threading.Event) -> None:
        self._bus = bus
        self._sender = sender
        self._wakeup = wakeup
        self._settings = bus.deps.settings
        self.owner = str(uuid.uuid4())
        self._inflight: dict[str, Future[Attempt]] = {}
        self._org_of: dict[str, str] = {}  # target id -> organisation, for the per-organisation share
        self._lock = threading.Lock()
        self._next_heartbeat_check = 0.0

    def run(self, stop: threading.Event) -> None:
        pool = ThreadPoolExecutor(
            max_workers=self._settings.webhook_workers, thread_name_prefix="notifications-delivery"
        )
        try:
            while not stop.is_set():
                try:
                    self._maybe_heartbeats()
                    self.dispatch_once(pool)
                except Exception:
                    log.warning("notification dispatcher tick failed", exc_info=True)
                    stop.wait(1.0)
                self._wakeup.wait(self._settings.dispatcher_idle_seconds)
                self._wakeup.clear()
        finally:
            # In-flight requests end within their timeout; unfinished leases expire for the next instance.
            pool.shutdown(wait=True, cancel_futures=True)
            self._sender.close()

    def run_due(self, limit: int = 100) -> list[Attempt]:
        """Deliver, one by one in this thread, whatever is due now (tests and one-shot tools)."""
        return [self.deliver(item) for item in self.claim(limit)]

    def _maybe_heartbeats(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat_check:
            return
        self._next_heartbeat_check = now + 1.0
        if self._bus.handle(QueueHeartbeats(self._bus.deps.clock())):
            self._wakeup.set()

    def dispatch_once(self, pool: ThreadPoolExecutor) -> int:
        """Fill the free threads, at most `webhook_workers_per_organisation` attempts per organisation: claim
        again while something was claimed, since a page may hold mostly one organisation's backlog."""
        total = 0
        while True:
            with self._lock:
                self._inflight = {t: f for t, f in self._inflight.items() if not f.done()}
                self._org_of = {t: self._org_of[t] for t in self._inflight}
                busy = frozenset(self._inflight)
                inflight: dict[str, int] = {}
                for target in busy:
                    org = self._org_of[target]
                    inflight[org] = inflight.get(org, 0) + 1
            free = self._settings.webhook_workers - len(busy)
            if free <= 0:
                return total
            claimed = self.claim(free, busy, inflight)
            for item in claimed:
                future = pool.submit(self.deliver, item)
                with self._lock:
                    self._inflight[item.target_id] = future
                    self._org_of[item.target_id] = item.org_id
                future.add_done_callback(lambda _f: self._wakeup.set())
            total += len(claimed)
            if not claimed:
                return total

    def claim(
        self, limit: int, busy: frozenset[str] = frozenset(), inflight: dict[str, int] | None = None
    ) -> list[Claimed]:
        """With `inflight` (the pool's view), at most `webhook_workers_per_organisation` per organisation;
        without it (run_due, one thread), everything due."""
        share = self._settings.webhook_workers_per_organisation if inflight is not None else None
        command = ClaimDueDeliveries(self.owner, limit, busy, inflight or {}, share)
        claimed: list[Claimed] = self._bus.handle(command)
        return claimed

    def deliver(self, item: Claimed) -> Attempt:
        target = views.delivery_target(self._bus.uow(), item.target_kind, item.target_id)
        if target is None:
            return TARGET_GONE
        body = item.body.encode()
        headers = delivery_headers(item, target, body, int(time.time()))
        attempt = self._sender.send(item.url, headers, body, channel_headers(target))
        self._bus.handle(RecordDeliveryAttempt(self.owner, item, attempt))
        return attempt
