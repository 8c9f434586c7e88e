"""The HTTP sender of deliveries: one POST, its outcome. The delivery worker knows only `Sender`."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

import httpx

from services.notifications.domain import Attempt


class Sender(Protocol):
    def send(self, url: str, headers: Mapping[str, str], body: bytes, deadline: float) -> Attempt:
        """POST `body` to `url`; `deadline` is the seconds the attempt may take. Never raises for the network."""
        ...

    def close(self) -> None: ...


class HttpxSender:
    """A pooled httpx client, made on first use; redirects are not followed (the target is what was registered)."""

    def __init__(self, workers: int, transport: httpx.BaseTransport | None = None) -> None:
        self._workers = workers
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    follow_redirects=False,
                    limits=httpx.Limits(max_connections=self._workers * 2, max_keepalive_connections=self._workers),
                    transport=self._transport,
                )
            return self._client

    def send(self, url: str, headers: Mapping[str, str], body: bytes, deadline: float) -> Attempt:
        try:
            response = self._http().post(url, content=body, headers=dict(headers), timeout=httpx.Timeout(deadline))
        except httpx.HTTPError as exc:
            return Attempt(False, None, f"{type(exc).__name__}: {exc}"[:500])
        ok = response.is_success
        return Attempt(ok, response.status_code, None if ok else f"HTTP {response.status_code}")

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
