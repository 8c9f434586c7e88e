"""The delivery worker: claims due deliveries under a lease, POSTs them with httpx, records the outcome.

Per target (webhook or subscription) only the oldest pending delivery is ever claimed, so each endpoint
receives in order; targets are independent, so a dead or slow endpoint only holds its own queue and at
most one of the pool's threads (for at most the request timeout) at a time.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import Counter

from services.notifications.domain import SIGNATURE_HEADER, backoff_delay, is_dead, signature_header
from services.notifications.handlers import enqueue_heartbeats
from services.notifications.uow import NotificationsUnitOfWork
from shared.settings import NotificationsSettings

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "relais_notification_deliveries_total",
    "Webhook and subscription delivery attempts",
    ["target_kind", "outcome"],
)


@dataclass(frozen=True)
class Claimed:
    seq: int
    id: str
    target_kind: str
    target_id: str
    kind: str
    notification_id: str | None
    url: str
    body: str
    attempts: int


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status: int | None
    error: str | None


class Dispatcher:
    def __init__(
        self,
        uow_factory: Callable[[], NotificationsUnitOfWork],
        settings: NotificationsSettings,
        wakeup: threading.Event,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._uow = uow_factory
        self._settings = settings
        self._wakeup = wakeup
        self._transport = transport
        self.owner = f"{uuid.uuid4()}"
        # The lease must outlive one request, or a slow answer would let a second instance resend it.
        self._lease = max(settings.webhook_lease_seconds, settings.webhook_timeout_seconds * 2 + 1)
        self._inflight: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._next_heartbeat_check = 0.0

    # --- the loop ---------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        if self._client is None:
            workers = self._settings.webhook_workers
            self._client = httpx.Client(
                timeout=httpx.Timeout(self._settings.webhook_timeout_seconds),
                follow_redirects=False,
                limits=httpx.Limits(max_connections=workers * 2, max_keepalive_connections=workers),
                transport=self._transport,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

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
            self.close()

    def run_due(self, limit: int = 100) -> list[Attempt]:
        """Deliver, one by one in this thread, whatever is due now (tests and one-shot tools)."""
        return [self.deliver(item) for item in self.claim(limit)]

    def _maybe_heartbeats(self) -> None:
        now = time.monotonic()
        if now < self._next_heartbeat_check:
            return
        self._next_heartbeat_check = now + 1.0
        with self._uow() as uow:
            if enqueue_heartbeats(uow, datetime.now(UTC)):
                self._wakeup.set()

    def dispatch_once(self, pool: ThreadPoolExecutor) -> int:
        with self._lock:
            self._inflight = {t: f for t, f in self._inflight.items() if not f.done()}
            busy = set(self._inflight)
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

    # --- steps (also used directly by tests) -------------------------------------------------

    def claim(self, limit: int, busy: set[str] | frozenset[str] = frozenset()) -> list[Claimed]:
        now = datetime.now(UTC)
        claimed: list[Claimed] = []
        with self._uow() as uow:
            for row in uow.deliveries.due_heads(now, limit, set(busy)):
                if uow.deliveries.claim(row.seq, self.owner, now, now + timedelta(seconds=self._lease)):
                    claimed.append(
                        Claimed(
                            row.seq,
                            row.id,
                            row.target_kind,
                            row.target_id,
                            row.kind,
                            row.notification_id,
                            row.url,
                            row.body,
                            row.attempts,
                        )
                    )
            uow.commit()
        return claimed

    def deliver(self, item: Claimed) -> Attempt:
        headers = self._headers(item)
        if headers is None:
            return Attempt(False, None, "target deleted")
        body = item.body.encode()
        if item.target_kind == "webhook":
            headers[SIGNATURE_HEADER] = signature_header(headers.pop("_secret"), int(time.time()), body)
        try:
            response = self._http().post(item.url, content=body, headers=headers)
            attempt = Attempt(
                200 <= response.status_code < 300,
                response.status_code,
                None if response.is_success else f"HTTP {response.status_code}",
            )
        except httpx.HTTPError as exc:
            attempt = Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500])
        self.record(item, attempt)
        return attempt

    def _headers(self, item: Claimed) -> dict[str, str] | None:
        headers = {
            "Content-Type": "application/fhir+json",
            "User-Agent": "Relais-Notifications/0.1",
            "Relais-Delivery-Id": item.id,
            "Relais-Delivery-Kind": item.kind,
        }
        if item.notification_id:
            headers["Relais-Notification-Id"] = item.notification_id
        with self._uow() as uow:
            if item.target_kind == "webhook":
                webhook = uow.webhooks.get(item.target_id)
                if webhook is None or not webhook.active:
                    return None
                headers["_secret"] = webhook.secret
            else:
                subscription = uow.subscriptions.get(item.target_id)
                if subscription is None or subscription.status == "off":
                    return None
                for header in subscription.headers:
                    name, _, value = header.partition(":")
                    headers[name.strip()] = value.strip()
        return headers

    def record(self, item: Claimed, attempt: Attempt) -> None:
        now = datetime.now(UTC)
        with self._uow() as uow:
            row = uow.deliveries.leased(item.seq, self.owner)
            if row is None:
                return  # our lease expired and another instance took over, or the target was deleted
            row.attempts += 1
            row.last_status = attempt.status
            row.last_error = attempt.error
            row.lease_owner = row.lease_until = None
            subscription = uow.subscriptions.get(row.target_id) if row.target_kind == "subscription" else None
            if attempt.ok:
                row.state, row.delivered_at = "delivered", now
                if subscription is not None and subscription.status in ("requested", "error"):
                    subscription.status, subscription.error = "active", None
                outcome = "delivered"
            elif is_dead(row.attempts, self._settings.webhook_max_attempts):
                row.state, row.dead_at = "dead", now
                if subscription is not None and subscription.status != "off":
                    subscription.status = "error"
                    subscription.error = f"{row.kind} delivery failed {row.attempts} times: {attempt.error}"[
                        :500
                    ]
                outcome = "dead"
            else:
                delay = backoff_delay(
                    row.attempts,
                    self._settings.webhook_backoff_base_seconds,
                    self._settings.webhook_backoff_max_seconds,
                )
                row.next_attempt_at = now + timedelta(seconds=delay)
                outcome = "retry"
            uow.commit()
        DELIVERIES.labels(item.target_kind, outcome).inc()
