"""What the HL7 v2 tests share: a Relais with the MLLP door, a bound hospital, certificates, a raw MLLP client.

The project's own PAM France fixtures are written here, in the shapes of the published examples (which the tests
read from ../shared/conformance, never copy).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trustme
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from relais.hl7 import embedded_hl7_door
from services.admissions.bootstrap import bootstrap as admissions_bootstrap
from services.discharge.bootstrap import bootstrap as discharge_bootstrap
from shared.auth import Directory
from shared.events import Role
from shared.hl7v2.door import Hl7Door
from shared.hl7v2.mllp import END, START, MllpServer
from shared.hl7v2.settings import MllpSettings, server_tls_context
from shared.hl7v2.store import ACK_TABLE
from shared.settings import AdmissionsSettings, DischargeSettings
from tests import factories as f
from tests.infra.brokers import REPO_ROOT
from tests.infra.hapi import ClientTls

EXAMPLES = REPO_ROOT.parent / "shared" / "conformance" / "examples" / "hl7v2-exemples"
FACILITIES = ("CHU-X", "CPAGE", "CPAGE_VBF3B", "DPI-EXEMPLE")
HOSPITAL = f.DEFAULT_FINESS
SECRET = "hl7-test-secret-0123456789abcdef"


@dataclass
class Hl7Relais:
    port: int
    door: Hl7Door
    directory: Directory
    services: list[Any]
    server: MllpServer
    workdir: Path
    ca: trustme.CA | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def stored_acks(self) -> int:
        with self.services[0].runtime.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(ACK_TABLE)).scalar_one())


def client_tls(relais: Hl7Relais, common_name: str = HOSPITAL) -> ClientTls:
    """A client certificate naming `common_name` (the hospital's id), as files the Java sender reads."""
    assert relais.ca is not None
    leaf = relais.ca.issue_cert("hospital.example", common_name=common_name, key_type=trustme.KeyType.RSA)
    folder = relais.workdir / f"client-{common_name}"
    folder.mkdir(exist_ok=True)
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (folder / "key.der").write_bytes(der)
    (folder / "key.pem").write_bytes(leaf.private_key_pem.bytes())
    (folder / "cert.pem").write_bytes(leaf.cert_chain_pems[0].bytes())
    relais.ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return ClientTls(folder / "ca.pem", folder / "cert.pem", folder / "key.der")


def _server_tls(workdir: Path, ca: trustme.CA) -> dict[str, Any]:
    server = ca.issue_cert("127.0.0.1", "localhost", key_type=trustme.KeyType.RSA)
    paths = {"tls_cert": workdir / "server.pem", "tls_key": workdir / "server.key", "tls_ca": workdir / "ca.pem"}
    server.cert_chain_pems[0].write_to_path(str(paths["tls_cert"]))
    server.private_key_pem.write_to_path(str(paths["tls_key"]))
    ca.cert_pem.write_to_path(str(paths["tls_ca"]))
    return paths


@contextmanager
def started_relais(
    workdir: Path, *, tls: bool = False, networks: tuple[str, ...] = ("127.0.0.1/32",), extra: list[Any] | None = None,
    **mllp: Any,
) -> Iterator[Hl7Relais]:
    """Admissions and discharge (and `extra` services) on SQLite, with the HL7 door listening on a free port."""
    directory = Directory(f"sqlite:///{workdir / 'auth.sqlite'}")
    tokens = {"hospital": directory.add(
        Role.HOSPITAL, HOSPITAL, "CHU Exemple", hl7_facilities=list(FACILITIES), hl7_networks=list(networks)
    )}
    common: dict[str, Any] = {"environment": "test", "data_dir": workdir, "secret_key": SECRET}
    services = [
        admissions_bootstrap(AdmissionsSettings(**common), directory=directory, run_workers=False),
        discharge_bootstrap(DischargeSettings(**common), directory=directory, run_workers=False),
        *(extra or []),
    ]
    ca = trustme.CA(key_type=trustme.KeyType.RSA) if tls else None
    settings = MllpSettings(port=0, **(_server_tls(workdir, ca) if ca else {}), **mllp)
    door = embedded_hl7_door(services, settings)
    server = MllpServer(door, settings, server_tls_context(settings))
    port = server.start()
    try:
        yield Hl7Relais(port, door, directory, services, server, workdir, ca, tokens)
    finally:
        server.stop()
        for service in services:
            service.runtime.close()
        directory.close()


class MllpClient:
    """A raw MLLP peer for the tests that need bytes a library would not send (fuzz, crash, enhanced mode)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def send(self, message: bytes) -> None:
        self.sock.sendall(START + message + END)

    def receive(self) -> bytes | None:
        """The next ACK's content, or None when the server closed the connection."""
        while END not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        frame, _, self.buffer = self.buffer.partition(END)
        return frame.lstrip(START)

    def exchange(self, message: bytes) -> bytes | None:
        self.send(message)
        return self.receive()

    def close(self) -> None:
        self.sock.close()


def msa(ack: bytes | None) -> list[str]:
    """MSA's fields of an ACK (MSA-1 at index 1)."""
    assert ack is not None, "the connection was closed instead of an ACK"
    segment = next(s for s in ack.split(b"\r") if s.startswith(b"MSA"))
    return segment.decode("latin-1").split("|")


def err(ack: bytes | None) -> str:
    """ERR-2 of an ACK as SEG-FIELD ("" when there is none)."""
    assert ack is not None
    segment = next((s for s in ack.split(b"\r") if s.startswith(b"ERR")), b"")
    location = segment.decode("latin-1").split("|")[2].split("^") if segment else []
    return f"{location[0]}-{location[2]}" if len(location) >= 3 else ""


# --- the project's own PAM France fixtures -----------------------------------------------------------------


def pam_message(
    trigger: str,
    control_id: str,
    *,
    facility: str = "DPI-EXEMPLE",
    nir: str = f.DEFAULT_NIR,
    identity_status: str = "VALI",
    nda: str = "NDA-2024-000123",
    patient_id: str = "000123",
    admitted: str = "20240502083000",
    discharged: str = "",
    postal_code: str = "75014",
    charset: str = "UNICODE UTF-8",
    zbe_action: str = "INSERT",
    original_trigger: str = "",
    ack_modes: tuple[str, str] = ("", ""),
    family: str = "MARTIN",
    expected_discharge: str = "",
) -> str:
    """A PAM France 2.11 ADT message (CR separators), shaped as the ANS examples; the INS is the test INS-NIR."""
    structure = {"A03": "ADT_A03", "A11": "ADT_A09", "A13": "ADT_A01", "A02": "ADT_A02"}.get(trigger, "ADT_A01")
    accept, application = ack_modes
    segments = [
        f"MSH|^~\\&|DPI|{facility}|RELAIS|RELAIS|20240502083500||ADT^{trigger}^{structure}|{control_id}|P|"
        f"2.5^FRA^2.11|||{accept}|{application}|FRA|{charset}|FR||2.11^IHE_FRANCE-2.11-PAM",
        f"EVN||20240502083500||||{discharged or admitted}",
        f"PID|1||{patient_id}^^^{facility}&1.2.250.1.71.4.2.2&ISO^PI~{nir}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10"
        f"&ISO^INS^^20101207||{family}^JEANNE^JEANNE^^^^L||19550314|F|||12 rue de la Paix^^PARIS^^{postal_code}^FRA^H"
        f"|||||S||{nda}^^^{facility}&1.2.250.1.71.4.2.2&ISO^AN|||||||1|||||N||{identity_status}|20240502083000",
        _pv1(facility, nda, admitted, discharged),
        *([f"PV2|||||||||{expected_discharge}"] if expected_discharge else []),
        f"ZBE|MVT-{control_id}^{facility}^1.2.250.1.71.4.2.2^ISO|{discharged or admitted}||{zbe_action}|N|"
        f"{original_trigger}|^^^^^^UF^^^1234||HMS",
    ]
    return "\r".join(segments) + "\r"


def _pv1(facility: str, nda: str, admitted: str, discharged: str) -> str:
    fields = [""] * 46
    fields[0], fields[1], fields[2] = "PV1", "1", "I"
    fields[3] = f"^^^{facility}&750712184&M^O^^"
    fields[19] = f"{nda}^^^{facility}&1.2.250.1.71.4.2.2&ISO^VN"
    fields[44], fields[45] = admitted, discharged
    return "|".join(fields).rstrip("|")


def deliveries_transport() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    return httpx.MockTransport(handler), seen
