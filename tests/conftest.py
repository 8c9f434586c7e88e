"""Session fixtures for the real parts: PostgreSQL and Kafka-protocol brokers (CONTRIBUTING.md#the-inner-test-loop).

Everything is lazy: a server starts the first time a test asks for its fixture, so a unit-test run
starts nothing. Fixtures:

* ``postgres``      session  ``PostgresServer`` (env URL, else local initdb cluster, else Docker)
* ``postgres_url``  function a fresh, empty database on it (SQLAlchemy ``postgresql+psycopg`` URL)
* ``kafka4``        session  ``Kafka4Cluster``: one Apache Kafka 4 node (KRaft), persists across
                    stop/kill/start; ``apache_kafka`` is the same broker under its older name
* ``kafka_cluster`` session  three Kafka 4 nodes (replication 3, min.insync.replicas 2): failover
* ``kafka_sasl``    session  one Kafka 4 node with SASL/SCRAM and the standard authorizer: ACLs
* ``kafka_secured`` session  ``kafka_sasl`` with deploy/kafka's topics and ACLs applied by apply.sh
* ``tansu``         session  ``TansuBroker`` (memory only: a stop/start empties it)
* ``kafka_broker``  function parametrised over ``tansu`` and ``kafka4`` (plus ``external``
                    when ``KAFKA_BOOTSTRAP_SERVERS`` is set); narrow it with
                    ``@pytest.mark.parametrize("kafka_broker", ["kafka4"], indirect=True)``

A test that stops a server and fails before starting it again does not poison the session: after
each test, every server started so far that is down is started again. Tests using these fixtures
get the ``postgres``/``kafka`` marks automatically (``-m "not postgres and not kafka"``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from shared.db import migrate
from shared.db.engine import make_engine
from tests.infra.attack_replay import AttackReplay, replaying_attacks
from tests.infra.brokers import ExternalKafka, TansuBroker, sweep_stale_tmpdirs
from tests.infra.kafka4 import Kafka4Cluster, KafkaUnavailable
from tests.infra.postgres import PostgresServer

KAFKA_BROKERS = ["tansu", "kafka4"]
if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
    KAFKA_BROKERS.append("external")
_BROKER_FIXTURES = {"tansu": "tansu", "kafka4": "kafka4", "external": "external_kafka"}
_POSTGRES_FIXTURES = {"postgres", "postgres_url"}
_KAFKA_FIXTURES = {"tansu", "kafka4", "apache_kafka", "kafka_cluster", "kafka_sasl", "kafka_secured", "external_kafka",
                   "kafka_broker"}

# servers started in this session, checked after every test
_STARTED: list = []


def pytest_configure(config: pytest.Config) -> None:
    if replaying_attacks(config):  # `make attack`: print the count of attacks held / tried per store
        config.pluginmanager.register(AttackReplay(), "attack-replay")
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


@pytest.fixture(scope="session", autouse=True)
def _migrated_sqlite_templates(tmp_path_factory):
    """A new, empty SQLite file is migrated once per service and session, then copied (SQLite's backup API):
    the same schema and Alembic version as a migration gives, without running Alembic for every test."""
    original = migrate.upgrade
    templates = tmp_path_factory.mktemp("migrated-templates")
    lock = threading.Lock()

    def upgrade(service: str, engine: Engine, schema: str | None = None, revision: str = "head") -> None:
        if not _empty_sqlite_file(engine) or schema or revision != "head":
            original(service, engine, schema, revision)
            return
        template = templates / f"{service}.sqlite"
        with lock:
            if not template.exists():
                template_engine = make_engine(f"sqlite:///{template}")
                original(service, template_engine)
                template_engine.dispose()
        source = sqlite3.connect(template)
        target = engine.raw_connection()
        try:
            driver = target.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            source.backup(driver)
        finally:
            target.close()
            source.close()

    patch = pytest.MonkeyPatch()
    patch.setattr(migrate, "upgrade", upgrade)
    yield
    patch.undo()


def _empty_sqlite_file(engine: Engine) -> bool:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return False
    return not Path(database).exists() or not inspect(engine).get_table_names()


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


def _kafka4(**options) -> Kafka4Cluster:
    try:
        return Kafka4Cluster(**options)
    except KafkaUnavailable as exc:
        pytest.fail(f"Apache Kafka 4 could not be fetched: {exc}", pytrace=False)


def _session_broker(broker):
    broker.start()
    _STARTED.append(broker)
    yield broker
    _STARTED.remove(broker)
    broker.close()


@pytest.fixture(scope="session")
def kafka4():
    """One Apache Kafka 4 node for the session (most tests)."""
    yield from _session_broker(_kafka4())


@pytest.fixture(scope="session")
def apache_kafka(kafka4):
    """The persistent broker of restart and crash tests: now Apache Kafka 4."""
    return kafka4


@pytest.fixture(scope="session")
def kafka_cluster():
    """Three Apache Kafka 4 nodes: replication factor 3, min.insync.replicas 2 (failover tests)."""
    yield from _session_broker(_kafka4(nodes=3, heap_mb=256))


@pytest.fixture(scope="session")
def kafka_sasl():
    """One Apache Kafka 4 node with SASL/SCRAM and the standard authorizer; a SCRAM user per principal
    of deploy/kafka/acls.yaml (``relais-admissions``...)."""
    import yaml

    from tests.infra.brokers import REPO_ROOT

    acls = yaml.safe_load((REPO_ROOT / "deploy" / "kafka" / "acls.yaml").read_text())
    users = tuple(entry["principal"].removeprefix("User:") for entry in acls["principals"])
    yield from _session_broker(_kafka4(sasl=True, users=(*users, "relais-intruder")))


@pytest.fixture(scope="session")
def kafka_secured(kafka_sasl, tmp_path_factory):
    """``kafka_sasl`` with deploy/kafka's topics and ACLs applied by apply.sh (twice: a re-run is harmless),
    and one record on partition 0 of every topic so that an allowed read has something to return."""
    import yaml
    from kafka import KafkaProducer

    from tests.infra.brokers import REPO_ROOT
    from tests.infra.kafka4 import apply_deploy_plan

    workdir = tmp_path_factory.mktemp("kafka-acls")
    for _ in range(2):
        result = apply_deploy_plan(kafka_sasl, workdir)
        assert result.returncode == 0, result.stdout + result.stderr
    topics = yaml.safe_load((REPO_ROOT / "deploy" / "kafka" / "topics.yaml").read_text())["topics"]
    producer = KafkaProducer(**kafka_sasl.client_config(), acks="all", max_block_ms=20_000)
    try:
        for topic in topics:
            producer.send(topic["name"], key=b"seed", value=b"seed", partition=0).get(timeout=20)
    finally:
        producer.close(timeout=5)
    return kafka_sasl


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
