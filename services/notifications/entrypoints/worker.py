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
from shared.outbound import classify

log = logging.getLogger(__name__)

# Ticks failing in a row before the dispatcher reports itself not ready (/readyz 503): one may be a blip.
FAILING_AFTER = 3


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
        self._failed_ticks = 0

    @property
    def healthy(self) -> bool:
        """False while its ticks keep failing (the readiness check of the service reads it)."""
        return self._failed_ticks < FAILING_AFTER

    def run(self, stop: threading.Event) -> None:
        pool = ThreadPoolExecutor(
            max_workers=self._settings.webhook_workers, thread_name_prefix="notifications-delivery"
        )
        try:
            while not stop.is_set():
                try:
                    self._maybe_heartbeats()
                    self.dispatch_once(pool)
                    self._failed_ticks = 0
                except Exception as exc:  # noqa: BLE001 - one failed tick must not end deliveries for everyone
                    self._tick_failed(exc)
                    stop.wait(1.0)
                self._wakeup.wait(self._settings.dispatcher_idle_seconds)
                self._wakeup.clear()
        finally:
            # In-flight requests end within their timeout; unfinished leases expire for the next instance.
            pool.shutdown(wait=True, cancel_futures=True)
            self._sender.close()

    def _tick_failed(self, exc: Exception) -> None:
        self._failed_ticks += 1
        count = self._failed_ticks
        # The traceback once per streak, then one line at 2, 4, 8... failures: a stuck store never floods the log.
        if count == 1:
            log.warning("notification dispatcher tick failed", exc_info=True)
        elif count & (count - 1) == 0:
            log.warning("notification dispatcher ticks failing: %d in a row (%s)", count, type(exc).__name__)

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
        """One attempt, never raising: whatever fails in it is recorded as the attempt's error class."""
        try:
            attempt = self._attempt(item)
        except Exception as exc:  # noqa: BLE001 - an attempt's failure is its outcome, never the worker's end
            attempt = Attempt(False, None, classify(exc))
        if attempt is TARGET_GONE:
            return attempt
        try:
            self._bus.handle(RecordDeliveryAttempt(self.owner, item, attempt))
        except Exception as exc:  # noqa: BLE001 - unrecorded, the lease expires and the attempt is made again
            log.warning("could not record a delivery attempt: %s", type(exc).__name__)
        return attempt

    def _attempt(self, item: Claimed) -> Attempt:
        target = views.delivery_target(self._bus.uow(), item.target_kind, item.target_id)
        if target is None:
            return TARGET_GONE
        body = item.body.encode()
        headers = delivery_headers(item, target, body, int(time.time()))
        return self._sender.send(item.url, headers, body, channel_headers(target))
