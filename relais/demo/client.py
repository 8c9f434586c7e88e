"""The services over HTTP, as the demo's actors call them, and the notifications they read from their feeds."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from relais.demo.errors import DemoError
from relais.demo.resources import FHIR_JSON

SERVICES = ("admissions", "discharge", "snp", "notifications")



@dataclass(frozen=True)
class FeedItem:
    """One notification read from `/notifications/feed` (a Parameters resource)."""

    id: str
    event: str
    role: str
    detail: str
    subject: str | None
    patient_key: str | None
    payload: Any
    resource: dict[str, Any]

    @classmethod
    def parse(cls, resource: dict[str, Any]) -> FeedItem:
        values: dict[str, Any] = {}
        for parameter in resource.get("parameter", []):
            name = parameter["name"]
            if name == "payload":
                values[name] = parameter.get("resource") or {
                    part["name"]: next((v for k, v in part.items() if k.startswith("value")), None)
                    for part in parameter.get("part", [])
                }
            else:
                values[name] = next((v for k, v in parameter.items() if k.startswith("value")), None)
        return cls(
            id=resource["id"],
            event=values.get("event", ""),
            role=values.get("role", ""),
            detail=values.get("detail", ""),
            subject=values.get("subject"),
            patient_key=values.get("patient-key"),
            payload=values.get("payload"),
            resource=resource,
        )

    def payload_resources(self, resource_type: str) -> list[dict[str, Any]]:
        if not isinstance(self.payload, dict) or self.payload.get("resourceType") != "Bundle":
            return []
        return [
            e["resource"]
            for e in self.payload.get("entry", [])
            if e.get("resource", {}).get("resourceType") == resource_type
        ]


def parse_urls(values: list[str] | str) -> dict[str, str]:
    """`http://host:8000` for every service, or `service=http://...` per service (the others keep the first)."""
    values = [values] if isinstance(values, str) else list(values)
    urls: dict[str, str] = {}
    default = None
    for value in values:
        name, sep, url = value.partition("=")
        if sep and name in SERVICES:
            urls[name] = url.rstrip("/")
        else:
            default = default or value.rstrip("/")
    missing = [s for s in SERVICES if s not in urls]
    if missing and default is None:
        raise DemoError(f"no URL for {', '.join(missing)}: give --url http://HOST:PORT or SERVICE=URL")
    return {s: urls.get(s) or default or "" for s in SERVICES}


class RelaisHttp:
    """The services over HTTP (one base URL per service; the same for all in combined mode)."""

    def __init__(self, urls: Mapping[str, str], timeout: float = 15.0) -> None:
        self.urls = dict(urls)
        self.client = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def call(
        self,
        service: str,
        method: str,
        path: str,
        token: str | None,
        body: dict[str, Any] | None = None,
        *,
        fhir: bool = True,
        expect: tuple[int, ...] = (200, 201),
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        content = None
        if body is not None:
            headers["Content-Type"] = FHIR_JSON if fhir else "application/json"
            content = json.dumps(body, ensure_ascii=False).encode()
        url = f"{self.urls[service]}/{service}{path}"
        try:
            response = self.client.request(method, url, content=content, headers=headers, params=params)
        except httpx.HTTPError as exc:
            raise DemoError(f"{method} {url}: {exc!r}") from exc
        if response.status_code not in expect:
            raise DemoError(f"{method} {url} answered {response.status_code}: {response.text[:800]}")
        return response.json() if response.content else {}

    def feed(self, token: str, after: str | None) -> tuple[list[FeedItem], str]:
        """Every notification after the cursor (all pages) and the cursor to continue from."""
        items: list[FeedItem] = []
        while True:
            params = {"limit": 200, **({"after": after} if after is not None else {})}
            bundle = self.call("notifications", "GET", "/feed", token, params=params)
            page = [FeedItem.parse(e["resource"]) for e in bundle.get("entry", [])]
            items.extend(page)
            after = next(tag["code"] for tag in bundle["meta"]["tag"] if tag["system"].endswith("feed-cursor"))
            if not page:
                return items, after

    def handled(self, service: str) -> float:
        """Bus messages the service's consumer group has handled successfully since its process started."""
        response = self.client.get(f"{self.urls[service]}/{service}/metrics")
        response.raise_for_status()
        total = 0.0
        pattern = re.compile(r"^relais_messages_handled_total\{([^}]*)\}\s+([0-9.e+]+)$")
        for line in response.text.splitlines():
            match = pattern.match(line)
            if not match:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            # Only "ok": a dead-lettered record (a broker's seed, a malformed message) is no mirrored change.
            if labels.get("consumer", "").endswith(f".{service}") and labels.get("outcome") == "ok":
                total += float(match.group(2))
        return total


def wait_until(predicate: Callable[[], Any], timeout: float, describe: Callable[[], str], interval: float = 0.1):
    """Poll with a deadline; DemoError with `describe()` when it passes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = predicate()
        except DemoError as exc:
            last = exc
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f" (last error: {last})" if last else ""
            raise DemoError(f"timed out after {timeout:.0f} s: {describe()}{detail}")
        time.sleep(interval)
