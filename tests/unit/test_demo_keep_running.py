"""`relais demo --keep-running`: once the journeys are played, the territory stays up with sign-in tokens printed."""

from __future__ import annotations

import io
import threading

from rich.console import Console
from typer.testing import CliRunner

from relais.cli import app
from relais.demo import _serve_until_stopped, load_territory


def test_keep_running_prints_where_to_sign_in_with_which_token_and_stops_when_asked():
    territory = load_territory("keep")
    tokens = {key: f"rls_token_{key}" for key in territory.organisations}
    out = io.StringIO()
    stop = threading.Event()
    stop.set()  # already asked to stop: returns after printing
    _serve_until_stopped("http://127.0.0.1:9", territory, tokens, Console(file=out, width=200), stop)
    printed = out.getvalue()
    assert "http://127.0.0.1:9/app/" in printed
    for key in ("cpts", "msp-lamarche", "msp-monthureux", "hospital"):
        assert tokens[key] in printed
    assert tokens["admin"] not in printed  # the administrator's token is not for the pages


def test_keep_running_does_not_apply_to_running_services():
    result = CliRunner().invoke(app, ["demo", "--url", "http://127.0.0.1:9", "--keep-running"])
    assert result.exit_code != 0
