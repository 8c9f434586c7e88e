"""Property-based tests of the FHIR intake (admissions and discharge `$process-message`).

From a valid hospital message, hypothesis applies random mutations: drop or replace elements, wrong JSON
types, random identifiers and event codes, huge strings, truncated or non-UTF-8 bodies, odd content types.
Whatever it sends: never a 5xx, every error is an OperationOutcome, and a rejected message stores nothing
(the outbox and every table of the service are unchanged; only the audit log may record a refusal).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from shared.db.tables import OutboxMessage
from shared.events import DAVINCI_EVENT_SYSTEM, TOPIC_NOTIFY_TEAM, TRE_R254_SYSTEM, Role
from tests import factories as f
from tests.fuzz.apps import FuzzService

# A fixed sequence by default (a red build is reproducible); RELAIS_FUZZ_RANDOM=1 explores new inputs,
# RELAIS_FUZZ_EXAMPLES=3000 explores longer (see docs/performance.md "Fuzzing").
MAX_EXAMPLES = int(os.environ.get("RELAIS_FUZZ_EXAMPLES", "150"))
DERANDOMIZE = not os.environ.get("RELAIS_FUZZ_RANDOM")
AUDIT = frozenset({"audit_log"})
Path = tuple[str | int, ...]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
identifier_values = st.one_of(
    st.text(alphabet="0123456789", min_size=0, max_size=20),
    st.text(alphabet="0123456789ABab -", min_size=1, max_size=20),
    st.text(max_size=30),
)
identifier_systems = st.sampled_from(
    [
        "urn:oid:1.2.250.1.213.1.4.8",
        "urn:oid:1.2.250.1.213.1.4.10",
        "https://rpps.esante.gouv.fr",
        "https://finess.esante.gouv.fr",
        "urn:oid:1.2.250.1.71.4.2.1",
        "urn:oid:1.2.250.1.71.4.2.2",
        "https://hopital.example.org/nda",
        "",
    ]
)
event_codings = st.tuples(
    st.sampled_from([TRE_R254_SYSTEM, DAVINCI_EVENT_SYSTEM, "http://example.org/other", ""]),
    st.one_of(
        st.sampled_from(
            [
                "ADM",
                "SOR",
                "notification-admit",
                "notification-discharge",
                "notification-transfer",
                "revise-admit",
                "cancel-admit",
                "revise-discharge",
                "cancel-discharge",
            ]
        ),
        st.text(max_size=20),
    ),
)
content_types = st.sampled_from(
    [
        "application/fhir+json",
        "application/json",
        "application/fhir+json; charset=utf-8",
        "application/json+fhir",
        "application/fhir+json; charset=latin-1",
        "text/plain",
        "application/xml",
        "",
    ]
)


def paths(node: Any, prefix: Path = ()) -> list[Path]:
    """Every element path in a JSON tree (not the root)."""
    found: list[Path] = []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def _parent(doc: Any, path: Path) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


def drop(doc: Any, path: Path, _value: Any) -> None:
    del _parent(doc, path)[path[-1]]


def replace(doc: Any, path: Path, value: Any) -> None:
    _parent(doc, path)[path[-1]] = value


def _identifiers(doc: Any) -> list[dict]:
    found = []
    for path in paths(doc):
        node = _parent(doc, path)[path[-1]]
        if isinstance(node, dict) and "system" in node and "value" in node:
            found.append(node)
    return found


@st.composite
def mutated_body(draw: st.DrawFn, make_message: Callable[[], dict]) -> tuple[bytes, str]:
    """A request body and Content-Type: a valid message with one to three mutations, or broken bytes."""
    doc = make_message()
    content_type = "application/fhir+json"
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(
            st.sampled_from(["drop", "replace", "wrong-type", "identifier", "event", "huge", "id", "content-type"])
        )
        targets = paths(doc)
        if kind in ("drop", "replace", "wrong-type", "huge") and targets:
            path = draw(st.sampled_from(targets))
            if kind == "drop":
                drop(doc, path, None)
            elif kind == "replace":
                replace(doc, path, draw(json_values))
            elif kind == "wrong-type":
                current = _parent(doc, path)[path[-1]]
                wrong = (
                    json_scalars
                    if isinstance(current, dict | list)
                    else st.just({"x": [1]}) | st.lists(json_scalars, max_size=2)
                )
                replace(doc, path, draw(wrong))
            else:
                replace(doc, path, "x" * draw(st.sampled_from([5_000, 60_000])))
        elif kind == "identifier" and (identifiers := _identifiers(doc)):
            identifier = draw(st.sampled_from(identifiers))
            identifier["system"] = draw(identifier_systems)
            identifier["value"] = draw(identifier_values)
        elif kind == "event" and isinstance(doc, dict) and doc.get("entry"):
            header = doc["entry"][0].get("resource") if isinstance(doc["entry"][0], dict) else None
            if isinstance(header, dict):
                system, code = draw(event_codings)
                header["eventCoding"] = {"system": system, "code": code}
        elif kind == "id" and isinstance(doc, dict):
            doc["id"] = draw(st.one_of(st.none(), st.text(max_size=70), st.integers()))
        elif kind == "content-type":
            content_type = draw(content_types)
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    tail = draw(st.sampled_from(["whole", "whole", "whole", "truncated", "latin-1", "bom", "garbage"]))
    if tail == "truncated":
        body = body[: draw(st.integers(min_value=0, max_value=max(len(body) - 1, 0)))]
    elif tail == "latin-1":
        body = json.dumps(doc, ensure_ascii=False).encode("latin-1", errors="replace") + b"\xe9"
    elif tail == "bom":
        body = b"\xef\xbb\xbf" + body
    elif tail == "garbage":
        body = draw(st.binary(max_size=200))
    return body, content_type


def post(fuzz: FuzzService, client: TestClient, body: bytes, content_type: str) -> Any:
    headers = {**fuzz.auth(Role.HOSPITAL)}
    if content_type:
        headers["Content-Type"] = content_type
    return client.post(f"/{fuzz.name}/fhir/$process-message", content=body, headers=headers)


def test_the_unmutated_messages_are_accepted(intake):
    fuzz, client, make_message = intake
    before = fuzz.row_counts()
    response = post(fuzz, client, f.body(make_message()), "application/fhir+json")
    assert response.status_code == 200, response.text
    assert fuzz.row_counts()["outbox"] > before["outbox"]
    with fuzz.service.runtime.sessions() as session:
        topics = set(session.execute(select(OutboxMessage.topic)).scalars())
    assert TOPIC_NOTIFY_TEAM in topics  # the patient has a team: the full clinical Bundle was built


def test_a_mutated_message_never_fails_the_server_and_a_rejected_one_stores_nothing(intake):
    fuzz, client, make_message = intake

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    @given(request=mutated_body(make_message))
    def check(request: tuple[bytes, str]) -> None:
        body, content_type = request
        before = fuzz.row_counts(skip=AUDIT)
        response = post(fuzz, client, body, content_type)
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/fhir+json")
            assert response.json()["resourceType"] == "OperationOutcome"
            assert fuzz.row_counts(skip=AUDIT) == before, f"a {response.status_code} left rows: {response.text}"
        else:
            assert response.status_code == 200
            assert response.json()["resourceType"] == "Bundle"

    check()
