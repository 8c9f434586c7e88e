"""The HTTP sender of deliveries: one POST through the guarded outbound client, its outcome as an error class.

The delivery worker knows only `Sender`. Every webhook, Subscription handshake and heartbeat goes through
`GuardedSender`: inward addresses refused at connect time, no redirects, a capped answer, one deadline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from services.notifications.domain import Attempt
from shared.outbound import GuardedClient


class Sender(Protocol):
    def send(
        self, url: str, headers: Mapping[str, str], body: bytes, extra_headers: Mapping[str, str] | None = None
    ) -> Attempt:
        """POST `body` to `url` with our `headers` (they win over the registrant's `extra_headers`).
        Never raises for the network; the error is a class (timeout, refused, tls, http_503...)."""
        ...

    def close(self) -> None: ...


class GuardedSender:
    """Adapts the kernel's GuardedClient (built once in bootstrap.py) to the delivery worker."""

    def __init__(self, client: GuardedClient) -> None:
        self._client = client

    def send(
        self, url: str, headers: Mapping[str, str], body: bytes, extra_headers: Mapping[str, str] | None = None
    ) -> Attempt:
        result = self._client.post(url, body, headers=headers, extra_headers=extra_headers)
        return Attempt(result.ok, result.status, result.error)

    def close(self) -> None:
        self._client.close()
