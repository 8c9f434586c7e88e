"""Apache Kafka 4.x in KRaft mode for tests: one node, or a three-node cluster, on free loopback ports.

The jars are Apache Kafka's published Maven artifacts, pinned in ``tests/infra/kafka/pom.xml`` and
copied by Maven into ``.cache/kafka-<version>/libs`` (``scripts/install.sh --test`` does it; the
harness does it too when they are missing). Each node is one JVM in combined mode (broker and
controller), with its own formatted log directory, so ``kill()`` then ``start()`` restarts it on
the same data and ports.

``Kafka4Cluster(sasl=True)`` listens with SASL/SCRAM-SHA-256 and the standard authorizer
(``allow.everyone.if.no.acl.found=false``); the SCRAM users are created when the log directories
are formatted, ``admin`` is the only super user.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.infra.brokers import REPO_ROOT, ManagedProcess, _Broker, free_port, log_tail, make_tmpdir
from tests.infra.wait import wait_for

POM = REPO_ROOT / "tests" / "infra" / "kafka" / "pom.xml"
# The one pin lives in the pom (scripts/install.sh reads it too).
KAFKA_VERSION = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text()).group(1)  # type: ignore[union-attr]
SCRAM_MECHANISM = "SCRAM-SHA-256"
ADMIN_USER = "admin"

_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
"""


class KafkaUnavailable(RuntimeError):
    """The Kafka jars could not be fetched (Maven's own error is in the message)."""


def kafka4_home() -> Path:
    return Path(os.environ.get("RELAIS_KAFKA4_HOME") or REPO_ROOT / ".cache" / f"kafka-{KAFKA_VERSION}")


def fetch_kafka4(home: Path | None = None) -> Path:
    """The directory of the pinned Kafka's jars, fetched with Maven the first time (one fetch at a time)."""
    home = home or kafka4_home()
    libs = home / "libs"
    marker = home / "fetched"
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers or two checkouts' runs fetch once
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaUnavailable(f"mvn not found: it fetches Apache Kafka {KAFKA_VERSION} (see {POM})")
        command = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
                   f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0 or not any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
            raise KafkaUnavailable(f"`{' '.join(command)}` failed ({result.returncode}):\n"
                                   f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        marker.write_text(KAFKA_VERSION)
    return libs


def _cluster_id() -> str:
    """Kafka's Uuid text form: URL-safe base64 of 16 bytes, no padding, and (as Kafka's own `Uuid.randomUuid`
    makes sure) never starting with "-", which kafka-storage's argument parser would take for an option:
    one random id in 64 used to make the format fail."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


@dataclass
class KafkaNode:
    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: ManagedProcess | None = None
    formatted: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive


class Kafka4Cluster(_Broker):
    """``nodes`` combined broker+controller JVMs of Apache Kafka ``KAFKA_VERSION`` on loopback.

    ``start()`` formats (first time) and starts every node that is down, then waits until all of
    them serve; ``kill_node(i)`` is a SIGKILL of one node, ``start_node(i)`` brings it back.
    ``stop()``/``kill()``/``start()`` act on every node, keeping the data.
    """

    name = "kafka4"
    api_version = None
    persistent = True

    def __init__(self, nodes: int = 1, *, sasl: bool = False, partitions: int = 3,
                 users: tuple[str, ...] = (), startup_timeout: float = 240.0, heap_mb: int = 384) -> None:
        self.libs = fetch_kafka4()
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("java not found on PATH: Apache Kafka 4 needs Java 17 or later")
        self.java = java
        self.sasl = sasl
        self.startup_timeout = startup_timeout
        self.heap_mb = heap_mb
        self.tmpdir = make_tmpdir("relais-kafka4-")
        self.cluster_id = _cluster_id()
        self.startup_seconds: float | None = None
        self.restart_seconds: float | None = None
        self._starts = 0
        # SCRAM users: the admin (super user) and the principals the test names; passwords are throwaway.
        self.passwords = {name: secrets.token_hex(12) for name in (ADMIN_USER, *users)} if sasl else {}
        ports: set[int] = set()

        def port() -> int:
            while (candidate := free_port()) in ports:
                pass
            ports.add(candidate)
            return candidate

        self.nodes = [KafkaNode(i + 1, port(), port(), self.tmpdir / f"node-{i + 1}") for i in range(nodes)]
        replication = min(3, nodes)
        self.replication = replication
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        (self.tmpdir / "log4j2.properties").write_text(_LOG4J2)
        protocol = "SASL_PLAINTEXT" if sasl else "PLAINTEXT"
        for node in self.nodes:
            node.directory.mkdir()
            lines = [
                "process.roles=broker,controller",
                f"node.id={node.node_id}",
                f"controller.quorum.voters={voters}",
                f"listeners={protocol}://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
                f"advertised.listeners={protocol}://127.0.0.1:{node.port}",
                "controller.listener.names=CONTROLLER",
                f"inter.broker.listener.name={protocol}",
                f"listener.security.protocol.map={protocol}:{protocol},CONTROLLER:PLAINTEXT",
                f"log.dirs={node.directory / 'data'}",
                f"num.partitions={partitions}",
                f"default.replication.factor={replication}",
                f"offsets.topic.replication.factor={replication}",
                "offsets.topic.num.partitions=6",
                f"transaction.state.log.replication.factor={replication}",
                f"transaction.state.log.min.isr={min(2, replication)}",
                f"min.insync.replicas={min(2, replication)}",
                "group.initial.rebalance.delay.ms=0",
                "group.min.session.timeout.ms=1000",
                "auto.create.topics.enable=true",
                "unclean.leader.election.enable=false",
                # A killed node's partitions move within seconds, not after the 18 s default.
                "broker.session.timeout.ms=3000",
                "broker.heartbeat.interval.ms=500",
                "controller.quorum.fetch.timeout.ms=2000",
                "controller.quorum.election.timeout.ms=1000",
                "replica.lag.time.max.ms=5000",
                "num.network.threads=2",
                "num.io.threads=2",
                "background.threads=2",
                "num.recovery.threads.per.data.dir=1",
                "log.cleaner.threads=1",
                "log.cleaner.dedupe.buffer.size=4194304",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
            ]
            if sasl:
                jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                        f'username="{ADMIN_USER}" password="{self.passwords[ADMIN_USER]}";')
                lines += [
                    f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
                    f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
                    f"listener.name.sasl_plaintext.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={jaas}",
                    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                    "allow.everyone.if.no.acl.found=false",
                    # The controller listener is PLAINTEXT on loopback: its peers are ANONYMOUS.
                    f"super.users=User:{ADMIN_USER};User:ANONYMOUS",
                ]
            (node.directory / "server.properties").write_text("\n".join(lines) + "\n")
            node.process = ManagedProcess(
                f"kafka-{node.node_id}",
                [self.java, f"-Xms{min(128, heap_mb)}m", f"-Xmx{heap_mb}m", "-XX:+UseSerialGC",
                 # C1 only: the JVM is up in seconds on a busy machine; a test broker needs no peak speed.
                 "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={self.tmpdir / 'log4j2.properties'}",
                 f"-Dkafka.logs.dir={node.directory}", "-cp", f"{self.libs}/*",
                 "kafka.Kafka", str(node.directory / "server.properties")],
                node.directory / "kafka.log", cwd=node.directory,
            )
        self.bootstrap = ",".join(n.address for n in self.nodes)

    # --- clients ------------------------------------------------------------------------------

    def client_config(self, user: str | None = None) -> dict:
        """kafka-python options for this cluster (as ``user``, default the admin, when SASL is on)."""
        config: dict = {"bootstrap_servers": self.bootstrap}
        if self.sasl:
            name = user or ADMIN_USER
            config.update(security_protocol="SASL_PLAINTEXT", sasl_mechanism=SCRAM_MECHANISM,
                          sasl_plain_username=name, sasl_plain_password=self.passwords[name])
        return config

    def relais_env(self, user: str | None = None) -> dict[str, str]:
        """The Relais settings that point a service at this cluster (as ``user`` when SASL is on)."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        if self.sasl:
            name = user or ADMIN_USER
            env.update(RELAIS_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", RELAIS_KAFKA_SASL_MECHANISM=SCRAM_MECHANISM,
                       RELAIS_KAFKA_SASL_USERNAME=name, RELAIS_KAFKA_SASL_PASSWORD=self.passwords[name])
        return env

    def admin(self):
        from kafka.admin import KafkaAdminClient

        return KafkaAdminClient(**self.client_config(), request_timeout_ms=10_000)

    # --- lifecycle ----------------------------------------------------------------------------

    def _format(self, node: KafkaNode) -> None:
        command = [self.java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
                   f"-Dlog4j2.configurationFile={self.tmpdir / 'log4j2.properties'}", "-cp", f"{self.libs}/*",
                   "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
                   "-c", str(node.directory / "server.properties")]
        for name, password in self.passwords.items():
            command += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed for node {node.node_id}:\n"
                               f"{result.stdout}\n{result.stderr}")
        node.formatted = True

    def _serving(self, expected: int) -> bool:
        for node in self.nodes:
            if node.process is not None and not node.alive and node.process.proc is not None:
                node.process.check_alive()
        admin = self.admin()
        try:
            brokers = admin.describe_cluster()["brokers"]
            return len(brokers) >= expected
        finally:
            admin.close()

    def wait_serving(self, timeout: float | None = None) -> None:
        expected = sum(1 for n in self.nodes if n.alive)
        wait_for(lambda: self._serving(expected), timeout=timeout or self.startup_timeout, interval=0.25,
                 message=lambda: f"Kafka {KAFKA_VERSION} on {self.bootstrap} ({expected} broker(s)); log tail:\n"
                                 + "\n".join(log_tail(n.directory / "kafka.log", 15) for n in self.nodes))

    def start(self) -> None:
        started = time.monotonic()
        down = [n for n in self.nodes if not n.alive]
        for node in down:
            if not node.formatted:
                self._format(node)
        for node in down:
            assert node.process is not None
            node.process.spawn()
        try:
            self.wait_serving()
        except BaseException:
            for node in down:
                assert node.process is not None
                node.process.kill()
            raise
        elapsed = time.monotonic() - started
        if self._starts == 0:
            self.startup_seconds = elapsed
        else:
            self.restart_seconds = elapsed
        self._starts += 1

    @property
    def running(self) -> bool:
        return all(n.alive for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            assert node.process is not None
            node.process.terminate(timeout=30)

    def kill(self) -> None:
        for node in self.nodes:
            assert node.process is not None
            node.process.kill()

    def kill_node(self, index: int) -> None:
        """SIGKILL one node (``index`` into ``nodes``): a crash, no controlled shutdown."""
        process = self.nodes[index].process
        assert process is not None
        process.kill()

    def start_node(self, index: int, timeout: float | None = None) -> None:
        node = self.nodes[index]
        assert node.process is not None
        node.process.spawn()
        self.wait_serving(timeout)

    def leader_index(self, topic: str, partition: int = 0) -> int:
        """Index into ``nodes`` of the current leader of ``topic``/``partition``."""
        admin = self.admin()
        try:
            described = admin.describe_topics([topic])
        finally:
            admin.close()
        for entry in described:
            for part in entry["partitions"]:
                if part["partition_index"] == partition:
                    leader = part["leader_id"]
                    return next(i for i, n in enumerate(self.nodes) if n.node_id == leader)
        raise LookupError(f"no leader for {topic}/{partition}")

    def coordinator_index(self, group: str) -> int:
        """Index into ``nodes`` of ``group``'s coordinator: the leader of its __consumer_offsets partition."""
        code = 0
        for char in group:  # Java's String.hashCode, by which Kafka places a group
            code = (31 * code + ord(char)) & 0xFFFFFFFF
        admin = self.admin()
        try:
            [offsets] = admin.describe_topics(["__consumer_offsets"])
        finally:
            admin.close()
        return self.leader_index("__consumer_offsets", (code & 0x7FFFFFFF) % len(offsets["partitions"]))

    def close(self) -> None:
        # The logs are thrown away: SIGKILL, because a graceful stop of the last nodes of a KRaft quorum waits
        # for controllers that are already gone (about 20 s per cluster at the end of every run).
        for node in self.nodes:
            if node.process is not None:
                with contextlib.suppress(Exception):
                    node.process.kill()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def admin_properties(cluster: Kafka4Cluster, path: Path) -> Path:
    """The admin client properties an operator hands to deploy/kafka/apply.sh (and to Kafka's own tools)."""
    jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN_USER}" '
            f'password="{cluster.passwords[ADMIN_USER]}";')
    path.write_text(f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={SCRAM_MECHANISM}\nsasl.jaas.config={jaas}\n")
    return path


def apply_deploy_plan(cluster: Kafka4Cluster, workdir: Path) -> subprocess.CompletedProcess:
    """Run deploy/kafka/apply.sh (admin-API mode) against the cluster: the repository's topics and ACLs."""
    import sys

    properties = admin_properties(cluster, workdir / "admin.properties")
    return subprocess.run(
        ["sh", str(REPO_ROOT / "deploy" / "kafka" / "apply.sh"), "--via", "admin-api",
         "--bootstrap-server", cluster.bootstrap, "--command-config", str(properties)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
