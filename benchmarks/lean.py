"""The lean reference for the intake benchmark: only the essential work of an admission, nothing of Relais.

Parse and validate the incoming message Bundle with fhir.resources (R4B, as Relais pins it), build the team's
message Bundle from the received resources and validate it, then one SQLite transaction (WAL, synchronous
NORMAL, as Relais' engine sets it) with the message row and the outbox row. No auth, routing, audit or ORM: the
floor a Python service with these libraries stands on, served by `benchmarks/serve.py lean` under the same
uvicorn as the intake.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fhir.resources.R4B.bundle import Bundle

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS message (id TEXT PRIMARY KEY, body TEXT NOT NULL, received_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
    "key TEXT NOT NULL, value TEXT NOT NULL, sent INTEGER NOT NULL DEFAULT 0)",
)


async def _raw_body(request: Request) -> bytes:
    return await request.body()


def _team_bundle(incoming: dict[str, Any]) -> dict[str, Any]:
    """The team's message: a new header, the received resources as they came."""
    message_id = str(uuid.uuid4())
    entries = [e for e in incoming["entry"] if e["resource"]["resourceType"] != "MessageHeader"]
    header = {
        "resourceType": "MessageHeader",
        "id": message_id,
        "eventCoding": {"system": "https://relais.example/event", "code": "admission"},
        "source": {"name": "Relais", "endpoint": "https://relais.example/fhir"},
        "focus": [{"reference": entries[0]["fullUrl"]}],
    }
    return {
        "resourceType": "Bundle",
        "id": message_id,
        "type": "message",
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": [{"fullUrl": f"urn:uuid:{message_id}", "resource": header}, *entries],
    }


def lean_app(database: Path) -> FastAPI:
    app = FastAPI()
    connections = threading.local()
    write_lock = threading.Lock()

    def connection() -> sqlite3.Connection:
        if not hasattr(connections, "db"):
            opened = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
            opened.execute("PRAGMA journal_mode=WAL")
            opened.execute("PRAGMA synchronous=NORMAL")
            opened.execute("PRAGMA busy_timeout=30000")
            connections.db = opened
        db: sqlite3.Connection = connections.db
        return db

    with write_lock:
        for statement in SCHEMA:
            connection().execute(statement)

    @app.post("/lean/fhir/$process-message")
    def process_message(body: Annotated[bytes, Depends(_raw_body)]) -> JSONResponse:
        data = json.loads(body)
        incoming = Bundle.model_validate(data)
        team = _team_bundle(data)
        Bundle.model_validate(team)
        db = connection()
        with write_lock:  # one writer at a time, as Relais' engine queues SQLite writers
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO message (id, body, received_at) VALUES (?, ?, ?)",
                (incoming.id, json.dumps({"id": incoming.id}), datetime.now(UTC).isoformat()),
            )
            db.execute(
                "INSERT INTO outbox (topic, key, value) VALUES (?, ?, ?)",
                ("relais.notify.team", "msp-bench", json.dumps(team)),
            )
            db.execute("COMMIT")
        return JSONResponse({"resourceType": "OperationOutcome", "id": incoming.id}, status_code=200)

    return app
