"""`relais run --mllp-port` killed with SIGKILL before and after a message's commit: the sender, which got no ACK,
sends it again after reconnecting, and it is processed once; nothing is lost, and one patient's stay keeps its
order (admission before discharge)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.hl7_support import HOSPITAL, MllpClient, msa, pam_message
from tests.infra.brokers import free_port
from tests.infra.wait import wait_for


@dataclass
class RelaisRun:
    workdir: Path
    http_port: int
    mllp_port: int
    process: subprocess.Popen | None = None

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAIS_", "KAFKA_"))}
        return env | {"RELAIS_DATA_DIR": str(self.data), "RELAIS_MLLP_IDLE_SECONDS": "30"}

    def relais(self, *args: str) -> subprocess.CompletedProcess:
        relais = shutil.which("relais", path=str(Path(sys.executable).parent)) or "relais"
        return subprocess.run([relais, *args], cwd=self.workdir, env=self._env(), capture_output=True, text=True,
                              timeout=120, check=True)

    def start(self) -> None:
        relais = shutil.which("relais", path=str(Path(sys.executable).parent)) or "relais"
        log = open(self.workdir / "relais.log", "ab")  # the process writes to it until it dies
        self.process = subprocess.Popen(
            [relais, "run", "--port", str(self.http_port), "--mllp-port", str(self.mllp_port)],
            cwd=self.workdir, env=self._env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for(self._listening, 90, 0.1, lambda: (self.workdir / "relais.log").read_text()[-3000:])

    def _listening(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "relais run exited"
        try:
            MllpClient(self.mllp_port, timeout=1).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)

    def pause(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def admission_messages(self) -> int:
        return self._count("admissions", "SELECT count(*) FROM admissions_message")

    def discharges(self) -> int:
        return self._count("discharge", "SELECT count(*) FROM discharge_discharge")

    def _count(self, service: str, query: str) -> int:
        with sqlite3.connect(f"file:{self.data / f'{service}.sqlite'}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute(query).fetchone()[0])


@pytest.fixture
def run(tmp_path) -> Iterator[RelaisRun]:
    running = RelaisRun(tmp_path, free_port(), free_port())
    running.relais("org", "add", "--role", "hospital", "--id", HOSPITAL, "--name", "CHU",
                   "--hl7-facility", "DPI-EXEMPLE", "--hl7-network", "127.0.0.1/32")
    running.start()
    yield running
    if running.process is not None and running.process.poll() is None:
        running.kill()


def test_a_kill_before_the_commit_loses_nothing_the_resend_is_processed(run):
    message = pam_message("A01", "CRASH-BEFORE").encode()
    run.pause()  # the listener cannot read, let alone commit
    client = MllpClient(run.mllp_port)
    client.send(message)
    run.kill()
    assert client.receive() is None  # no ACK: the sender must send again
    assert run.admission_messages() == 0
    run.start()
    assert msa(MllpClient(run.mllp_port).exchange(message))[1] == "AA"
    assert run.admission_messages() == 1


def test_a_kill_after_the_commit_and_before_the_ack_is_read_is_processed_once(run):
    admission = pam_message("A01", "CRASH-AFTER").encode()
    client = MllpClient(run.mllp_port)
    client.send(admission)
    wait_for(lambda: run.admission_messages() == 1, 30, 0.01, "the admission's commit")
    run.kill()  # the sender never reads its ACK: for it, the message may be lost
    run.start()
    again = MllpClient(run.mllp_port)
    assert msa(again.exchange(admission))[1:3] == ["AA", "CRASH-AFTER"]
    assert run.admission_messages() == 1  # processed once
    discharge = pam_message("A03", "CRASH-AFTER-SOR", discharged="20240509110000").encode()
    assert msa(again.exchange(discharge))[1] == "AA"  # the stay's order kept: its discharge follows
    assert run.discharges() == 1


def test_a_stream_killed_in_the_middle_is_complete_after_the_resends(run):
    messages = [pam_message("A01", f"STREAM-{i}", nda=f"NDA-S-{i}").encode() for i in range(40)]
    acknowledged: set[int] = set()
    client = MllpClient(run.mllp_port)
    for i, message in enumerate(messages):
        client.send(message)
        if i == 20:
            run.kill()
            break
        if msa(client.receive())[1] == "AA":
            acknowledged.add(i)
    run.start()
    client = MllpClient(run.mllp_port)
    for i, message in enumerate(messages):
        if i not in acknowledged:  # what a sender does: everything not acknowledged, in order
            assert msa(client.exchange(message))[1] == "AA"
    assert run.admission_messages() == len(messages)
