"""Findings "500s", "one request freezes every service" and "413 the client never sees", against the kernel app."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from shared.api.limits import RequestLimits, check_json
from shared.errors import PayloadTooLarge, Unprocessable
from tests import factories as f
from tests.security.conftest import PROCESS, build_app, live_server

pytestmark = pytest.mark.attack

FHIR = {"Content-Type": "application/fhir+json"}


def outcome(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def nested_extension(depth: int) -> dict:
    extension: dict = {"url": "http://example.org/leaf", "valueString": "x"}
    for level in range(depth):
        extension = {"url": f"http://example.org/e{level}", "extension": [extension]}
    return extension


def test_extensions_nested_300_deep_are_a_422_not_a_recursion_error(kernel):
    bundle = f.admission_message()
    bundle["entry"][1]["resource"]["extension"] = [nested_extension(300)]
    body = outcome(kernel.client().post(PROCESS, content=f.body(bundle), headers=FHIR), 422)
    assert "nested deeper" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("depth", [100_000, 990])
def test_bodies_nested_beyond_the_parser_are_a_422(kernel, depth):
    raw = b"[" * depth + b"]" * depth
    outcome(kernel.client().post(PROCESS, content=raw, headers=FHIR), 422)


def test_a_bundle_of_17000_entries_is_refused_before_parsing(tmp_path):
    app = build_app(tmp_path, RequestLimits(max_body_bytes=3_000_000))
    bundle = f.admission_message()
    bundle["entry"].extend({"fullUrl": f"urn:uuid:{i}", "resource": {"resourceType": "Basic"}} for i in range(17_000))
    body = outcome(app.client().post(PROCESS, content=json.dumps(bundle).encode(), headers=FHIR), 413)
    assert body["issue"][0]["code"] == "too-long"


def test_over_long_strings_and_arrays_are_413(kernel):
    bundle = f.admission_message()
    bundle["entry"][1]["resource"]["id"] = "x" * 100_001
    outcome(kernel.client().post(PROCESS, content=f.body(bundle), headers=FHIR), 413)
    with pytest.raises(PayloadTooLarge):
        check_json(json.dumps({"a": list(range(5001))}).encode(), RequestLimits())


def test_nul_characters_are_refused_in_json_and_in_queries(kernel):
    bundle = f.admission_message()
    bundle["entry"][1]["resource"]["name"] = [{"family": "DU\u0000PONT"}]
    outcome(kernel.client().post(PROCESS, content=f.body(bundle), headers=FHIR), 422)
    with pytest.raises(Unprocessable):
        check_json(b'{"a\\u0000": 1}', RequestLimits())
    outcome(kernel.client().get("/kernel/items/x?name=a%00b"), 400)


def test_a_valid_message_still_goes_through(kernel):
    response = kernel.client().post(PROCESS, content=f.body(f.admission_message()), headers=FHIR)
    assert response.status_code == 200, response.text


def test_the_catch_all_answers_an_outcome_and_logs_no_request_content(kernel, caplog):
    with caplog.at_level(logging.DEBUG):
        body = outcome(kernel.client().post("/kernel/explode"), 500)
    assert "185057800608491" not in json.dumps(body)
    assert "185057800608491" not in caplog.text and "1985-05-12" not in caplog.text
    assert "ValueError" in caplog.text


def test_unknown_methods_and_paths_do_not_create_metric_series(kernel):
    client = kernel.client()

    def series() -> set[str]:
        # The registry is process-wide: keep this service's series, without their counts.
        text = client.get("/kernel/metrics").text
        return {
            line.rsplit(" ", 1)[0]
            for line in text.splitlines()
            if line.startswith("relais_http_requests_total{") and 'service="kernel"' in line
        }

    before = series()
    for i in range(30):
        client.request(f"M{i}X", f"/kernel/items/{i}")
        client.get(f"/kernel/guess-{i}")
        client.get(f"/kernel/items/value-{i}")
    after = series()
    assert not any("M1X" in line or "guess-" in line or "value-" in line for line in after)
    assert any('method="OTHER"' in line for line in after)
    assert any('route="unmatched"' in line for line in after)
    assert any('route="/kernel/items/{item_id}"' in line for line in after)
    # 90 distinct methods and paths add at most a handful of series (method x route x status), not 90.
    assert len(after - before) <= 8, sorted(after - before)


def _raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 15.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(head)
        if body:
            conn.sendall(body)
        data = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                return data + b"<reset>"
            if not chunk:
                return data
            data += chunk
            if b"\r\n\r\n" in data:
                head_part, _, rest = data.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(rest) >= length[0]:
                    return data


def test_an_oversized_body_sent_whole_still_gets_its_413(tmp_path):
    app = build_app(tmp_path, RequestLimits(max_body_bytes=100_000, max_drain_bytes=32_000_000))
    body = b"{" + b" " * 20_000_000 + b"}"
    head = (f"POST {PROCESS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
            f"Authorization: Bearer {app.tokens['hospital']}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with live_server(app.app) as port:
        answer = _raw_request(port, head, body)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"OperationOutcome" in answer


def test_a_body_sent_too_slowly_gets_a_408(tmp_path):
    app = build_app(tmp_path, RequestLimits(body_timeout_seconds=1.0))
    head = (f"POST {PROCESS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
            "Content-Length: 1000\r\n\r\n").encode()
    with live_server(app.app) as port:
        answer = _raw_request(port, head, b"{\"a\":")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"OperationOutcome" in answer


def test_headers_sent_too_slowly_close_the_connection(tmp_path):
    app = build_app(tmp_path)
    with live_server(app.app, http_header_timeout_seconds=1.0) as port:
        answer = _raw_request(port, b"GET /kernel/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert answer in (b"", b"<reset>")
        # A well-behaved client on the same server is served.
        assert _raw_request(port, b"GET /kernel/healthz HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")
