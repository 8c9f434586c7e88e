"""A real PostgreSQL for tests.

Order of preference (CONTRIBUTING.md#the-inner-test-loop):

1. ``RELAIS_TEST_DATABASE_URL`` or ``DATABASE_URL`` from the environment (external server: never
   stopped or restarted here);
2. a throwaway cluster from the local PostgreSQL binaries (``initdb``/``postgres`` on a free
   loopback port, in a temporary directory, ``fsync=off``, commits written before they are
   acknowledged). As root, initdb refuses to run, so
   the cluster runs as the ``postgres`` user (or ``nobody``) through ``Popen(user=...)``;
3. ``testcontainers`` ``PostgresContainer`` when a Docker engine answers.

``stop()``/``start()``/``restart()`` keep the same data directory and port (fault tests).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.infra.brokers import ManagedProcess, free_port, log_tail, make_tmpdir
from tests.infra.wait import WaitTimeout, wait_for

_LIVE_SERVERS: set[PostgresServer] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE_SERVERS):
        try:
            server.close()
        except Exception:
            pass


def _sqlalchemy_url(url: str) -> str:
    """``postgres://``/``postgresql://`` -> ``postgresql+psycopg://``."""
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


def _libpq_url(url: str) -> str:
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


def find_pg_bin() -> Path | None:
    """Directory holding initdb/postgres: ``RELAIS_PG_BIN``, newest /usr/lib/postgresql/*/bin, PATH."""
    override = os.environ.get("RELAIS_PG_BIN")
    if override:
        return Path(override)
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    if candidates:
        return max(candidates, key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0))
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _unprivileged_user() -> str | None:
    """None when not root; else a user initdb accepts ('postgres' if it exists, else 'nobody')."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither user 'postgres' nor 'nobody' exists for initdb")


class PostgresServer:
    """Context manager; ``url`` is a SQLAlchemy URL to the ``postgres`` database.

    ``kind`` is ``"external"``, ``"local"`` or ``"container"``; ``restartable`` says whether
    ``stop()``/``start()`` are allowed.
    """

    def __init__(self, startup_timeout: float = 60.0) -> None:
        self.startup_timeout = startup_timeout
        self.kind: str | None = None
        self.url: str | None = None
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self.startup_seconds: float | None = None
        self.restart_seconds: float | None = None
        self._process: ManagedProcess | None = None
        self._container = None
        self._running = False

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def restartable(self) -> bool:
        return self.kind in ("local", "container")

    @property
    def running(self) -> bool:
        if self.kind == "local":
            return self._process is not None and self._process.alive
        return self._running

    def start(self) -> None:
        """First call picks a backend and starts it; later calls restart a stopped server on the
        same data directory and port."""
        began = time.monotonic()
        first = self.kind is None
        if first:
            external = os.environ.get("RELAIS_TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
            if external:
                self.kind = "external"
                self.url = _sqlalchemy_url(external)
            elif find_pg_bin() is not None:
                self.kind = "local"
                self._init_local()
            elif _docker_available():
                self.kind = "container"
            else:
                raise RuntimeError(
                    "no PostgreSQL for the tests: set DATABASE_URL, install the server binaries "
                    "(scripts/install.sh --test) or run a Docker engine")
        elif self.running:
            return
        if self.kind == "local":
            self._start_local()
        elif self.kind == "container":
            self._start_container(first)
        self._wait_ready()
        self._running = True
        _LIVE_SERVERS.add(self)
        if first:
            self.startup_seconds = time.monotonic() - began
        else:
            self.restart_seconds = time.monotonic() - began

    def stop(self, mode: str = "fast") -> None:
        """Stop the server. ``mode``: ``smart``/``fast`` (clean) or ``immediate`` (crash-like:
        recovery on the next start)."""
        if not self.restartable:
            raise RuntimeError(f"a {self.kind} PostgreSQL cannot be stopped by the tests")
        if self.kind == "local":
            self._stop_local(mode)
        else:
            self._container.get_wrapped_container().stop(timeout=10)
        self._running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Stop for good and remove the data directory (nothing for an external server)."""
        _LIVE_SERVERS.discard(self)
        if self.kind == "local":
            if self._process is not None and self._process.alive:
                self._stop_local("immediate")
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
        elif self.kind == "container" and self._container is not None:
            self._container.stop()
        self._running = False

    # --- databases ------------------------------------------------------------------------------

    def conninfo(self, database: str | None = None) -> str:
        """libpq URL (for psycopg.connect)."""
        url = _with_database(self.url, database) if database else self.url
        return _libpq_url(url)

    def url_for(self, database: str) -> str:
        return _with_database(self.url, database)

    def connect(self, database: str | None = None, **kwargs):
        import psycopg

        return psycopg.connect(self.conninfo(database), connect_timeout=5, **kwargs)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"unsafe database name {name!r}")
        with self.connect(autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"unsafe database name {name!r}")
        with self.connect(autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # --- readiness ------------------------------------------------------------------------------

    def _wait_ready(self) -> None:
        def ready() -> bool:
            if self._process is not None:
                self._process.check_alive()
            with self.connect() as conn:
                return conn.execute("select 1").fetchone()[0] == 1

        def describe() -> str:
            if self._process is not None:
                return f"PostgreSQL on port {self.port}; log tail:\n{log_tail(self._process.log_path)}"
            return f"PostgreSQL at {self.url}"

        try:
            wait_for(ready, timeout=self.startup_timeout, interval=0.05, message=describe)
        except (WaitTimeout, RuntimeError):
            if self._process is not None:
                self._process.kill()
            raise

    # --- local cluster --------------------------------------------------------------------------

    def _init_local(self) -> None:
        bindir = find_pg_bin()
        user = _unprivileged_user()
        self.tmpdir = make_tmpdir("relais-pg-")
        self.port = free_port()
        data = self.tmpdir / "data"
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.tmpdir, entry.pw_uid, entry.pw_gid)
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        initdb_log = self.tmpdir / "initdb.log"
        with open(initdb_log, "wb") as log:
            result = subprocess.run(
                [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                 "-E", "UTF8", "--locale=C", "--no-sync"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                user=user, cwd=self.tmpdir, timeout=120,
            )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{log_tail(initdb_log)}")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# relais tests\n"
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.tmpdir}'\n"
                # fsync and full-page writes only guard against the machine losing power; a commit is
                # still on its way to the kernel before it is acknowledged (synchronous_commit on), so
                # an `immediate` restart (a crash of PostgreSQL) loses nothing it said it had committed.
                "fsync = off\n"
                "synchronous_commit = on\n"
                "full_page_writes = off\n"
                "max_connections = 200\n"
                "shared_buffers = 64MB\n"
                "logging_collector = off\n"
            )
        # postgres runs in the foreground as our child: its own process group, killed by the
        # kernel if the test process dies (pg_ctl would daemonise it out of our reach).
        self._process = ManagedProcess(
            "postgres", [str(bindir / "postgres"), "-D", str(data)], self.tmpdir / "postgres.log",
            cwd=self.tmpdir, user=user,
        )

    def _start_local(self) -> None:
        self._process.spawn()

    def _stop_local(self, mode: str) -> None:
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        proc = self._process.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)  # the postmaster only: it shuts its backends down itself
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._process._reap()

    # --- container ------------------------------------------------------------------------------

    def _start_container(self, first: bool) -> None:
        if first:
            from testcontainers.postgres import PostgresContainer

            self._container = PostgresContainer("postgres:16", username="postgres", password="postgres",
                                                dbname="postgres", driver="psycopg")
            self._container.start()
        else:
            self._container.get_wrapped_container().start()
        host = self._container.get_container_host_ip()
        self.port = int(self._container.get_exposed_port(5432))
        self.url = f"postgresql+psycopg://postgres:postgres@{host}:{self.port}/postgres"

