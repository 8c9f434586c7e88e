"""The README's "First steps", run as written (bash, the `relais` CLI, curl and docs/examples/) against `relais run`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx

from relais.demo import RelaisHttp
from tests.e2e.test_run_command import relais_run  # noqa: F401 - the fixture
from tests.infra.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]


def readme_block(number: int) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- first-steps:{number}\b.*?-->\n```sh\n(.*?)```", text, re.DOTALL)
    assert match, f"README block first-steps:{number} is missing"
    return match.group(1)


def events(base: str, token: str) -> list[str]:
    bundle = httpx.get(f"{base}/notifications/feed", headers={"Authorization": f"Bearer {token}"}).json()
    return [
        p["valueCode"]
        for e in bundle.get("entry", [])
        for p in e["resource"]["parameter"]
        if p["name"] == "event"
    ]


def run_first_steps(base: str, env: dict[str, str]) -> dict[str, str]:
    """Both blocks, as a reader types them into one terminal; the tokens they ended with."""
    # Both blocks run in one shell, as a reader would type them into one terminal.
    first = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block(1) + 'echo "TEAM=$TEAM HOSPITAL=$HOSPITAL"'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert first.returncode == 0, first.stderr + first.stdout
    assert "Traceback" not in first.stderr + first.stdout
    assert '"resourceType": "Bundle"' in first.stdout  # the feed, printed indented
    tokens = dict(re.findall(r"\b(TEAM|HOSPITAL)=(rls_\S+)", first.stdout))
    assert set(tokens) == {"TEAM", "HOSPITAL"}
    wait_for(lambda: "admission.recorded" in events(base, tokens["TEAM"]), 30, message="the admission in the feed")
    # The discharge routes by the care team the discharge service mirrors from the bus: wait for it, as a reader
    # reading the feed would have.
    http = RelaisHttp({"discharge": base})
    wait_for(lambda: http.handled("discharge") >= 1, 30, message="the care team mirrored by discharge")
    http.close()
    second = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f'URL={base}; HOSPITAL={tokens["HOSPITAL"]}\n' + readme_block(2)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert second.returncode == 0, second.stderr + second.stdout
    assert "Traceback" not in second.stderr + second.stdout
    return tokens


def test_the_first_steps_of_the_readme_run_as_written_twice_in_a_row(relais_run):  # noqa: F811 - the fixture
    base, tmp_path, process = relais_run
    assert shutil.which("curl"), "the README's first steps use curl"
    wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, 60,
             message=lambda: (tmp_path / "relais.log").read_text()[-3000:])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAIS_", "KAFKA_"))}
    env.update(RELAIS_URL=base, RELAIS_DATA_DIR=str(tmp_path / "data"))
    tokens = run_first_steps(base, env)
    wait_for(lambda: "handoff.proposed" in events(base, tokens["TEAM"]), 30, message="the handoff in the feed")
    # The example stay is dated relative to today: the team's follow-ups are due, none is late.
    team = {"Authorization": f"Bearer {tokens['TEAM']}"}
    tasks = httpx.get(f"{base}/discharge/fhir/Task?status=requested", headers=team)
    ends = [
        e["resource"]["restriction"]["period"]["end"]
        for e in tasks.json().get("entry", [])
        if e["resource"].get("intent") == "plan"
    ]
    assert ends and all(datetime.fromisoformat(end) > datetime.now(UTC) for end in ends), ends

    # A second run: the organisations exist, so their tokens are rotated; no traceback, and the new tokens work.
    again = run_first_steps(base, env)
    assert again["TEAM"] != tokens["TEAM"] and again["HOSPITAL"] != tokens["HOSPITAL"]
    assert process.poll() is None
