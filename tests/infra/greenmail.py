"""GreenMail (`com.icegreen:greenmail-standalone`) as the MSSanté operator's SMTPS/IMAPS server in tests.

The standalone jar is copied by Maven into ``.cache/greenmail-<version>/`` (``scripts/install.sh --test`` does it;
the harness fetches it when missing) and run with Java 17 on free loopback ports, with a keystore made here by
openssl (a certificate for 127.0.0.1 the client trusts through its CA file, as Relais trusts its operator's).
"""

from __future__ import annotations

import fcntl
import imaplib
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

from tests.infra.brokers import REPO_ROOT, ManagedProcess, free_port, log_tail, make_tmpdir
from tests.infra.wait import wait_for

GREENMAIL_VERSION = "2.1.3"
POM = REPO_ROOT / "tests" / "infra" / "greenmail" / "pom.xml"
PASSWORD = "greenmail-test-password"
JAR = f"greenmail-standalone-{GREENMAIL_VERSION}.jar"


class GreenMailUnavailable(RuntimeError):
    """The jar could not be fetched or the server did not start (the reason is in the message)."""


def greenmail_home() -> Path:
    return Path(os.environ.get("RELAIS_GREENMAIL_HOME") or REPO_ROOT / ".cache" / f"greenmail-{GREENMAIL_VERSION}")


def fetch_greenmail(home: Path | None = None) -> Path:
    """The pinned standalone jar, fetched with Maven the first time (one fetch at a time across checkouts)."""
    home = home or greenmail_home()
    jar = home / JAR
    if jar.exists():
        return jar
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if jar.exists():
            return jar
        mvn = shutil.which("mvn")
        if mvn is None:
            raise GreenMailUnavailable(f"mvn not found: it fetches GreenMail {GREENMAIL_VERSION} (see {POM})")
        command = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
                   f"-DoutputDirectory={home}", "-DincludeScope=runtime"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if result.returncode != 0 or not jar.exists():
            raise GreenMailUnavailable(f"`{' '.join(command)}` failed ({result.returncode}):\n"
                                       f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return jar


def make_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made by openssl."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


class GreenMail:
    """One GreenMail process: SMTPS and IMAPS on loopback; every address given is a mailbox with PASSWORD."""

    def __init__(self, addresses: list[str]) -> None:
        self.workdir = make_tmpdir("relais-greenmail-")
        self.cert, key = make_certificate(self.workdir)
        keystore = self.workdir / "server.p12"
        subprocess.run(
            ["openssl", "pkcs12", "-export", "-in", str(self.cert), "-inkey", str(key), "-out", str(keystore),
             "-passout", f"pass:{PASSWORD}", "-name", "greenmail"],
            check=True, capture_output=True, timeout=60,
        )
        self.smtps_port, self.imaps_port = free_port(), free_port()
        users = ",".join(f"{a.partition('@')[0]}:{PASSWORD}@{a.partition('@')[2]}" for a in addresses)
        argv = [
            "java", "-Xmx256m",
            f"-Dgreenmail.smtps.port={self.smtps_port}", "-Dgreenmail.smtps.hostname=127.0.0.1",
            f"-Dgreenmail.imaps.port={self.imaps_port}", "-Dgreenmail.imaps.hostname=127.0.0.1",
            # Logins are full addresses, as on an MSSanté operator.
            f"-Dgreenmail.users={users}", "-Dgreenmail.users.login=email",
            f"-Dgreenmail.tls.keystore.file={keystore}", f"-Dgreenmail.tls.keystore.password={PASSWORD}",
            f"-Dgreenmail.tls.key.password={PASSWORD}",
            # GreenMail creates the users only once every server reports up within this time; its default (2 s)
            # is exceeded on a busy machine, leaving servers that answer but know nobody.
            "-Dgreenmail.startup.timeout=60000",
            "-jar", str(fetch_greenmail()),
        ]
        self.process = ManagedProcess("greenmail", argv, self.workdir / "greenmail.log")
        self.addresses = list(addresses)

    def start(self, timeout: float = 60.0) -> None:
        self.process.spawn()
        wait_for(self._serving, timeout, 0.2, lambda: "GreenMail did not start:\n" + log_tail(self.process.log_path))

    def _serving(self) -> bool:
        if not self.process.alive:
            raise GreenMailUnavailable("GreenMail exited:\n" + log_tail(self.process.log_path))
        for port in (self.smtps_port, self.imaps_port):
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        # The ports open before the users exist: ready once the last one can sign in.
        with imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=self.context(), timeout=5) as imap:
            imap.login(self.addresses[-1], PASSWORD)
        return True

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def smtp_url(self, login: str) -> str:
        return f"smtps://{quote(login, safe='')}:{PASSWORD}@127.0.0.1:{self.smtps_port}"

    def imap_url(self, login: str) -> str:
        return f"imaps://{quote(login, safe='')}:{PASSWORD}@127.0.0.1:{self.imaps_port}"

    def send(self, login: str, raw: bytes, recipient: str) -> None:
        """Submit a mail as `login` would from its own software (an MDN, say)."""
        with smtplib.SMTP_SSL("127.0.0.1", self.smtps_port, context=self.context(), timeout=10) as client:
            client.login(login, PASSWORD)
            client.sendmail(login, [recipient], raw)

    def messages(self, address: str) -> list[EmailMessage]:
        """What an LGC would fetch from this mailbox over IMAPS (read without marking seen)."""
        with imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=self.context(), timeout=10) as imap:
            imap.login(address, PASSWORD)
            imap.select("INBOX", readonly=True)
            _, data = imap.search(None, "ALL")
            found: list[EmailMessage] = []
            for number in data[0].split():
                _, parts = imap.fetch(number, "(BODY.PEEK[])")
                raw = next(p[1] for p in parts if isinstance(p, tuple))
                found.append(message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
            return found

    def purge(self, addresses: list[str]) -> None:
        """Empty these mailboxes (tests sharing one server start from nothing)."""
        for address in addresses:
            with imaplib.IMAP4_SSL("127.0.0.1", self.imaps_port, ssl_context=self.context(), timeout=10) as imap:
                imap.login(address, PASSWORD)
                imap.select("INBOX")
                _, data = imap.search(None, "ALL")
                for number in data[0].split():
                    imap.store(number.decode(), "+FLAGS", "\\Deleted")
                imap.expunge()

    def close(self) -> None:
        self.process.terminate(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)
