"""`relais demo`: the territory seeded and the journeys played, in this process or against running services."""

from __future__ import annotations

import logging
import threading
import uuid
from contextlib import ExitStack
from contextlib import closing as _closing
from pathlib import Path
from typing import Any

from relais.demo.client import SERVICES, RelaisHttp, parse_urls
from relais.demo.embedded import embedded_relais
from relais.demo.journeys import Received, Scenario
from relais.demo.keep_running import _serve_until_stopped
from relais.demo.printing import _progress_and_table, received_table
from relais.demo.territory import load_territory, register


def run_demo(
    *,
    urls: list[str] | None = None,
    data_dir: Path | None = None,
    auth_database_url: str | None = None,
    auth_database_schema: str | None = None,
    timeout: float = 30.0,
    console: Any = None,
    keep_running: bool = False,
    stop: threading.Event | None = None,
    port: int = 0,
) -> dict[str, Received]:
    """Seed the territory and play the journeys, in-process (default) or against running services (`urls`).

    keep_running (in-process only): leave the territory up afterwards, print where to sign in with which token,
    and serve until `stop` is set or the user presses Ctrl-C."""
    import tempfile

    from rich.console import Console

    from shared.auth import Directory
    from shared.settings import RelaisSettings

    console = console or Console()
    run_tag = uuid.uuid4().hex[:8]
    territory = load_territory(run_tag)

    tokens: dict[str, str] = {}

    def play(http: RelaisHttp, directory: Any) -> dict[str, Received]:
        tokens.update(register(territory, directory))
        scenario = Scenario(http, territory, tokens, timeout=timeout, run_tag=run_tag)
        received = _progress_and_table(scenario, console)
        console.print(received_table(received))
        if keep_running and not urls:
            # Something for the newcomer to do on the CPTS board: one orientation left waiting.
            with console.status("Louise (no treating team) leaves hospital: her orientation waits for the CPTS"):
                scenario.leave_orientation_waiting()
        return received

    if urls:
        settings = RelaisSettings()
        directory = Directory(
            auth_database_url or settings.resolved_auth_url, auth_database_schema or settings.auth_database_schema
        )
        http = RelaisHttp(parse_urls(urls))
        console.print(f"Relais at {', '.join(sorted(set(http.urls.values())))}")
        try:
            return play(http, directory)
        finally:
            http.close()
            directory.close()

    with tempfile.TemporaryDirectory(prefix="relais-demo-") as scratch:
        where = Path(data_dir) if data_dir else Path(scratch)
        log_path = where / "demo.log"
        where.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with ExitStack() as stack:
                with console.status("starting Relais in this process (migrating each service's database)"):
                    url, directory = stack.enter_context(embedded_relais(where, port=port))
                settings = RelaisSettings()
                bus = f"Kafka at {settings.kafka_bootstrap_servers}" if settings.uses_kafka else "the embedded log"
                console.print(f"Relais in this process on {url}: data in {where}, bus: {bus}")
                http = stack.enter_context(_closing(RelaisHttp({s: url for s in SERVICES})))
                received = play(http, directory)
                if keep_running:
                    _serve_until_stopped(url, territory, tokens, console, stop or threading.Event())
                return received
        finally:
            root.removeHandler(handler)
            handler.close()
