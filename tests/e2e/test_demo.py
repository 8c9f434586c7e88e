"""`relais demo` on the embedded default (SQLite and the embedded log, no server): runs to completion in a
bounded time and its table shows what each organisation received."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.e2e.harness import clean_environment, relais_executable

EXPECTED_ROWS = {
    "Centre hospitalier de l'Ouest vosgien (Neufchâteau)": 4,
    "MSP de Monthureux-sur-Saône": 6,
    "MSP de Lamarche": 6,
    "Cabinet médical de Vittel (effecteur SNP)": 1,
    "CPTS de la Plaine": 8,
    "DAC des Vosges": 1,
    "SAS des Vosges (régulation libérale)": 0,
    "Administrateur Relais (démo)": 0,
}


def run_demo(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**clean_environment(), "COLUMNS": "200"}
    return subprocess.run(
        [relais_executable(), "demo", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def table_rows(stdout: str) -> dict[str, int]:
    return {
        m.group(1).strip(): int(m.group(2))
        for m in re.finditer(r"^│ ([^│]+?)\s*│ \w+\s*│\s+(\d+) │", stdout, re.MULTILINE)
    }


@pytest.mark.timeout(240)
def test_relais_demo_runs_to_completion_on_the_embedded_default(tmp_path):
    result = run_demo(tmp_path, "--data-dir", str(tmp_path / "data"), "--timeout", "30")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "bus: the embedded log" in result.stdout
    assert table_rows(result.stdout) == EXPECTED_ROWS
    # Everything lived in the data directory: one SQLite file per service, the log and the directory.
    files = sorted(p.name for p in (tmp_path / "data").glob("*.sqlite"))
    assert files == sorted(
        ["admissions.sqlite", "discharge.sqlite", "snp.sqlite", "notifications.sqlite", "auth.sqlite", "bus.sqlite"]
    )


@pytest.mark.timeout(240)
def test_relais_demo_runs_again_on_the_same_data_and_counts_only_its_own_run(tmp_path):
    data = str(tmp_path / "data")
    first = run_demo(tmp_path, "--data-dir", data)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    again = run_demo(tmp_path, "--data-dir", data)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert table_rows(again.stdout) == EXPECTED_ROWS


def test_relais_demo_fails_clearly_when_nothing_answers(tmp_path):
    from tests.infra.brokers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = run_demo(tmp_path, "--url", url, "--timeout", "2")
    assert result.returncode == 1
    assert "demo failed" in result.stdout and url in result.stdout
