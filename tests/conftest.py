"""Session fixtures for the real parts: PostgreSQL and Kafka-protocol brokers (DESIGN.md section 5).

Everything is lazy: a server starts the first time a test asks for its fixture, so a unit-test run
starts nothing. Fixtures:

* ``postgres``      session  ``PostgresServer`` (env URL, else local initdb cluster, else Docker)
* ``postgres_url``  function a fresh, empty database on it (SQLAlchemy ``postgresql+psycopg`` URL)
* ``tansu``         session  ``TansuBroker`` (memory only: a stop/start empties it)
* ``apache_kafka``  session  ``ApacheKafka09`` (persists: for restart/crash tests)
* ``kafka_broker``  function parametrised over ``tansu`` and ``apache-kafka`` (plus ``external``
                    when ``KAFKA_BOOTSTRAP_SERVERS`` is set); narrow it with
                    ``@pytest.mark.parametrize("kafka_broker", ["tansu"], indirect=True)``

A test that stops a server and fails before starting it again does not poison the session: after
each test, every server started so far that is down is started again. Tests using these fixtures
get the ``postgres``/``kafka`` marks automatically (``-m "not postgres and not kafka"``).
"""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from tests.infra.brokers import (
    INSTALL_HINT,
    ApacheKafka09,
    ExternalKafka,
    TansuBroker,
    kafka_home,
    sweep_stale_tmpdirs,
)
from tests.infra.postgres import PostgresServer

KAFKA_BROKERS = ["tansu", "apache-kafka"]
if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
    KAFKA_BROKERS.append("external")
_BROKER_FIXTURES = {"tansu": "tansu", "apache-kafka": "apache_kafka", "external": "external_kafka"}
_POSTGRES_FIXTURES = {"postgres", "postgres_url"}
_KAFKA_FIXTURES = {"tansu", "apache_kafka", "external_kafka", "kafka_broker"}

# servers started in this session, checked after every test
_STARTED: list = []


def pytest_configure(config: pytest.Config) -> None:
    # `timeout`/CI cancellation sends SIGTERM, which would skip atexit and fixture teardown; turn it
    # into an interrupt so servers are stopped and their directories removed. (Child processes
    # also die with the test process through PR_SET_PDEATHSIG, whatever kills it.)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def _interrupt(signum, frame):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        if names & _KAFKA_FIXTURES:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session", autouse=True)
def _infra_session_cleanup():
    """Remove directories of servers from killed earlier runs; starts nothing."""
    sweep_stale_tmpdirs()
    yield
    _STARTED.clear()


@pytest.fixture(autouse=True)
def _own_consumer_groups(monkeypatch):
    """Each test's services join consumer groups of their own: a shared broker never mixes two tests."""
    monkeypatch.setenv("RELAIS_CONSUMER_GROUP_PREFIX", f"relais-test-{uuid.uuid4().hex[:8]}")


@pytest.fixture(autouse=True)
def _restart_stopped_servers():
    """After each test, start again any session server the test left stopped."""
    yield
    for server in list(_STARTED):
        if getattr(server, "restartable", True) and not server.running:
            server.start()


# --- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    server.start()
    _STARTED.append(server)
    yield server
    _STARTED.remove(server)
    server.close()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A new empty database for this test; dropped afterwards only on an external server."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = postgres.create_database(name)
    yield url
    if postgres.kind == "external":
        try:
            postgres.drop_database(name)
        except Exception as exc:
            import warnings

            warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)


# --- Kafka --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tansu():
    broker = TansuBroker()
    broker.start()
    _STARTED.append(broker)
    yield broker
    _STARTED.remove(broker)
    broker.close()


@pytest.fixture(scope="session")
def apache_kafka():
    if not (kafka_home() / "libs").is_dir():
        pytest.fail(f"Apache Kafka 0.9.0.1 jars not found in {kafka_home() / 'libs'}: {INSTALL_HINT}",
                    pytrace=False)
    broker = ApacheKafka09()
    broker.start()
    _STARTED.append(broker)
    yield broker
    _STARTED.remove(broker)
    broker.close()


@pytest.fixture(scope="session")
def external_kafka():
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.fail("external_kafka needs KAFKA_BOOTSTRAP_SERVERS", pytrace=False)
    broker = ExternalKafka()
    broker.start()
    return broker


@pytest.fixture(params=KAFKA_BROKERS)
def kafka_broker(request):
    """Each contract test runs against every real broker."""
    if request.param not in _BROKER_FIXTURES:
        raise ValueError(f"unknown broker {request.param!r}; expected one of {sorted(_BROKER_FIXTURES)}")
    return request.getfixturevalue(_BROKER_FIXTURES[request.param])
