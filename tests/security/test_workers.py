"""Finding "silent worker death": a dying worker is restarted, counted, and /readyz says so while it is down."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from shared.api.app import create_service_app
from shared.bus.worker import WORKER_RESTARTS, SupervisedWorker
from tests.infra.wait import wait_for as poll

pytestmark = pytest.mark.attack


def wait_for(condition, seconds: float = 10.0) -> None:
    poll(condition, seconds, 0.01, "condition not met in time")


def test_a_worker_that_dies_is_restarted_and_counted():
    stop = threading.Event()
    runs: list[int] = []

    def flaky(stop_event: threading.Event) -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom with data that must not be logged")
        stop_event.wait()

    before = WORKER_RESTARTS.labels("test-flaky")._value.get()
    worker = SupervisedWorker("test-flaky", flaky, stop, backoff_initial=0.01, backoff_max=0.05)
    worker.start()
    wait_for(lambda: len(runs) == 3 and worker.healthy)
    assert worker.restarts == 2
    assert WORKER_RESTARTS.labels("test-flaky")._value.get() == before + 2
    stop.set()
    worker.join(5)


def test_readyz_reports_a_worker_that_is_down():
    stop = threading.Event()
    release = threading.Event()
    died = threading.Event()

    def dies_then_recovers(stop_event: threading.Event) -> None:
        if not died.is_set():
            died.set()
            raise RuntimeError("boom")
        release.set()
        stop_event.wait()

    # A long first backoff holds the worker down while /readyz is asked.
    worker = SupervisedWorker("test-down", dies_then_recovers, stop, backoff_initial=0.5)
    app = create_service_app(service="kernel", title="k", description="k", routers=[],
                             ready_checks={"database": lambda: True, "workers": lambda: worker.healthy},
                             capability={})
    client = TestClient(app)
    assert client.get("/kernel/readyz").status_code == 200
    worker.start()
    wait_for(died.is_set)
    wait_for(lambda: not worker.healthy)
    down = client.get("/kernel/readyz")
    assert down.status_code == 503
    assert down.json()["checks"]["workers"] is False
    wait_for(release.is_set)
    wait_for(lambda: client.get("/kernel/readyz").status_code == 200)
    stop.set()
    worker.join(5)


def test_a_worker_that_returns_early_is_restarted():
    stop = threading.Event()
    runs: list[int] = []

    def returns(stop_event: threading.Event) -> None:
        runs.append(1)
        if len(runs) >= 2:
            stop_event.wait()

    worker = SupervisedWorker("test-returns", returns, stop, backoff_initial=0.01)
    worker.start()
    wait_for(lambda: len(runs) == 2)
    stop.set()
    worker.join(5)
    assert worker.restarts == 1
