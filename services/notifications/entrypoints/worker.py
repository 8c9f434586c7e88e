"""The delivery loop: queue heartbeats, lease due deliveries, POST them through the sender, record the outcome.

Per target (webhook or subscription) only the oldest pending delivery is ever claimed, so each endpoint
receives in order; targets are independent, so a dead or slow endpoint only holds its own queue and at
most one of the pool's threads (for at most the request timeout) at a time. Every state change goes
through the message bus.
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
from services.notifications.domain import TARGET_GONE, Attempt, Claimed, delivery_headers
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
        with self._lock:
            self._inflight = {t: f for t, f in self._inflight.items() if not f.done()}
            busy = frozenset(self._inflight)
        free = self._settings.webhook_workers - len(busy)
        if free <= 0:
            return 0
        claimed = self.claim(free, busy)
        for item in claimed:
            future = pool.submit(self.deliver, item)
            future.add_done_callback(lambda _f: self._wakeup.set())
            with self._lock:
                self._inflight[item.target_id] = future
        return len(claimed)

    def claim(self, limit: int, busy: frozenset[str] = frozenset()) -> list[Claimed]:
        claimed: list[Claimed] = self._bus.handle(ClaimDueDeliveries(self.owner, limit, busy))
        return claimed

    def deliver(self, item: Claimed) -> Attempt:
        target = views.delivery_target(self._bus.uow(), item.target_kind, item.target_id)
        if target is None:
            return TARGET_GONE
        body = item.body.encode()
        headers = delivery_headers(item, target, body, int(time.time()))
        attempt = self._sender.send(item.url, headers, body, self._settings.webhook_timeout_seconds)
        self._bus.handle(RecordDeliveryAttempt(self.owner, item, attempt))
        return attempt
