"""The hospital's MLLP sender: HAPI HL7 v2 (Java, `ca.uhn.hapi` 2.5.1) driven by tests/infra/hl7/HapiSender.java.

The jars are copied by Maven into ``.cache/hapi-<version>/libs`` (``scripts/install.sh --test`` does it; else the
first test that needs them does, once); the sender is compiled with javac against them into a directory beside.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.infra.brokers import REPO_ROOT

HAPI_VERSION = "2.5.1"
POM = REPO_ROOT / "tests" / "infra" / "hl7" / "pom.xml"
SOURCE = REPO_ROOT / "tests" / "infra" / "hl7" / "HapiSender.java"


class HapiUnavailable(RuntimeError):
    """The HAPI jars could not be fetched or the sender not compiled (the tool's own error is in the message)."""


def hapi_home() -> Path:
    return REPO_ROOT / ".cache" / f"hapi-{HAPI_VERSION}"


def _fetch(home: Path) -> Path:
    libs = home / "libs"
    if (home / "fetched").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise HapiUnavailable(f"mvn not found: it fetches HAPI HL7 v2 {HAPI_VERSION} (see {POM})")
    command = [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={libs}", "-DincludeScope=runtime"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0 or not any(libs.glob(f"hapi-base-{HAPI_VERSION}.jar")):
        raise HapiUnavailable(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stderr[-3000:]}")
    (home / "fetched").write_text(HAPI_VERSION)
    return libs


def _compile(home: Path, libs: Path) -> Path:
    classes = home / "sender"
    compiled = classes / "HapiSender.class"
    if compiled.exists() and compiled.stat().st_mtime >= SOURCE.stat().st_mtime:
        return classes
    classes.mkdir(parents=True, exist_ok=True)
    classpath = ":".join(str(jar) for jar in sorted(libs.glob("*.jar")))
    command = ["javac", "-nowarn", "-cp", classpath, "-d", str(classes), str(SOURCE)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise HapiUnavailable(f"javac failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return classes


def hapi_classpath() -> str:
    """The classpath of the compiled sender (fetching and compiling once; one at a time across processes)."""
    home = hapi_home()
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        libs = _fetch(home)
        classes = _compile(home, libs)
    return ":".join([str(classes), *(str(jar) for jar in sorted(libs.glob("*.jar")))])


@dataclass(frozen=True)
class Ack:
    path: str
    code: str  # MSA-1, or ERROR when HAPI could not send or read
    control_id: str  # MSA-2
    error_field: str  # ERR-2 as SEG-FIELD, e.g. PID-18


@dataclass(frozen=True)
class ClientTls:
    ca_pem: Path
    cert_pem: Path
    key_der: Path  # PKCS#8 DER (what Java's KeyFactory reads)


def send_with_hapi(
    port: int, files: list[Path], workdir: Path, tls: ClientTls | None = None, timeout: float = 300.0
) -> list[Ack]:
    """Send each file over one MLLP connection with HAPI's client; the ACK HAPI matched to each."""
    listing = workdir / "files.txt"
    listing.write_text("\n".join(str(f) for f in files) + "\n", encoding="utf-8")
    command = ["java", "-cp", hapi_classpath(), "HapiSender", "127.0.0.1", str(port), str(listing)]
    if tls is not None:
        command += [str(tls.ca_pem), str(tls.cert_pem), str(tls.key_der)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise HapiUnavailable(f"HapiSender failed ({result.returncode}):\n{result.stderr[-3000:]}")
    acks = []
    for line in result.stdout.splitlines():
        parts = [*line.split("\t"), "", "", ""]
        acks.append(Ack(parts[0], parts[1], parts[2], parts[3]))
    return acks
