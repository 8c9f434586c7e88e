"""What a peer on the network (or a hospital with a valid binding) would try against the MLLP door: never a crash,
never a hang; an AR or a clean close, and the listener still answers the next sender."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest
import trustme

from shared.hl7v2.mllp import END, START
from tests.hl7_support import Hl7Relais, MllpClient, client_tls, msa, pam_message, started_relais

pytestmark = pytest.mark.attack


@pytest.fixture(scope="module")
def relais(tmp_path_factory) -> Iterator[Hl7Relais]:
    with started_relais(
        tmp_path_factory.mktemp("hl7-attacks"), max_message_bytes=200_000, idle_seconds=2, read_seconds=2
    ) as running:
        yield running


def still_answers(relais: Hl7Relais) -> None:
    client = MllpClient(relais.port)
    control = f"ALIVE-{time.monotonic_ns()}"
    assert msa(client.exchange(pam_message("A28", control).encode()))[1:3] == ["AA", control]
    client.close()


def closed(sock: socket.socket, deadline: float = 10.0) -> bool:
    """True when the server closes the connection (reads end) within the deadline, whatever it sent first."""
    sock.settimeout(deadline)
    end = time.monotonic() + deadline
    try:
        while time.monotonic() < end:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def test_a_frame_larger_than_the_limit_closes_the_connection(relais):
    sock = socket.create_connection(("127.0.0.1", relais.port))
    header = pam_message("A01", "BIG-1").encode()
    try:
        sock.sendall(START + header + b"X" * 300_000 + END)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while we were still sending: the point
    assert closed(sock)
    still_answers(relais)


def test_a_100_megabyte_frame_is_cut_off_without_exhausting_memory(relais):
    sock = socket.create_connection(("127.0.0.1", relais.port))
    chunk = b"A" * 1_000_000
    sent = 0
    try:
        sock.sendall(START)
        for _ in range(100):
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 100_000_000 or closed(sock)  # the server stopped reading long before the end
    assert closed(sock)
    still_answers(relais)


def test_bytes_outside_a_frame_close_the_connection(relais):
    sock = socket.create_connection(("127.0.0.1", relais.port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed(sock)
    still_answers(relais)


def test_a_truncated_frame_is_never_processed_and_the_connection_ends_at_the_read_deadline(relais):
    sock = socket.create_connection(("127.0.0.1", relais.port))
    sock.sendall(START + pam_message("A01", "TRUNC-1").encode()[:80])
    started = time.monotonic()
    assert closed(sock, 10)
    assert time.monotonic() - started < 8
    assert relais.door.store.get("750712184", "TRUNC-1") is None
    still_answers(relais)


def test_an_idle_connection_is_closed_at_the_idle_deadline(relais):
    sock = socket.create_connection(("127.0.0.1", relais.port))
    assert closed(sock, 10)


def test_a_frame_without_msh_closes_the_connection_without_an_ack(relais):
    client = MllpClient(relais.port)
    assert client.exchange(b"PID|1||123^^^X^PI\r") is None
    still_answers(relais)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: m.replace(b"PID|", b"PID\x00|"), "MSH"),
        (lambda m: m.replace(b"MARTIN", b"MART\xc3IN"), "MSH-18"),
        (lambda m: m.replace(b"UNICODE UTF-8", b"EBCDIC"), "MSH-18"),
        (lambda m: m + b"NTE|1||x\r" * 10_000, "MSH"),
        (lambda m: m.replace(b"ADT^A01^ADT_A01", b"ADT^A99^ADT_A01"), "MSH-9"),
        (lambda m: b"\r".join(s for s in m.split(b"\r") if not s.startswith(b"PID")), "PID"),
    ],
    ids=["NUL byte", "invalid UTF-8", "unknown charset", "10,000 segments", "trigger outside PAM", "no PID"],
)
def test_a_message_that_cannot_be_accepted_gets_ar(relais, mutate, field):
    client = MllpClient(relais.port)
    message = mutate(pam_message("A01", f"AR-{field}-{time.monotonic_ns()}").encode())
    ack = client.exchange(message)
    client.close()
    assert msa(ack)[1] == "AR"
    still_answers(relais)


def test_a_peer_outside_the_registered_networks_is_closed_at_once(tmp_path):
    with started_relais(tmp_path, networks=("10.99.0.0/16",)) as running:
        client = MllpClient(running.port)
        assert client.exchange(pam_message("A01", "OUTSIDE-1").encode()) is None
        assert running.door.store.get("750712184", "OUTSIDE-1") is None


def _tls_exchange(port: int, ca_pem: str, cert: str | None, key: str | None, message: bytes) -> bytes | None:
    context = ssl.create_default_context(cafile=ca_pem)
    if cert and key:
        context.load_cert_chain(cert, key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(START + message + END)
        data = b""
        while END not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        return data


def test_over_tls_a_certificate_naming_another_organisation_is_closed(tmp_path):
    with started_relais(tmp_path, tls=True, networks=()) as running:
        tls = client_tls(running, common_name="130000011")  # a FINESS the directory does not bind
        try:
            answer = _tls_exchange(running.port, str(tls.ca_pem), str(tls.cert_pem),
                                   str(tls.cert_pem.parent / "key.pem"), pam_message("A01", "TLS-OTHER").encode())
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            answer = None
        assert answer is None
        assert running.door.store.get("130000011", "TLS-OTHER") is None


def test_over_tls_a_certificate_from_another_ca_fails_the_handshake(tmp_path):
    with started_relais(tmp_path, tls=True, networks=()) as running:
        rogue = trustme.CA(key_type=trustme.KeyType.RSA)
        leaf = rogue.issue_cert("hospital.example", common_name="750712184", key_type=trustme.KeyType.RSA)
        leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "rogue.pem"))
        leaf.private_key_pem.write_to_path(str(tmp_path / "rogue.key"))
        assert running.ca is not None
        running.ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            answer = _tls_exchange(running.port, str(tmp_path / "ca.pem"), str(tmp_path / "rogue.pem"),
                                   str(tmp_path / "rogue.key"), pam_message("A01", "TLS-ROGUE").encode())
            assert answer is None  # TLS 1.3 may report the refusal as a closed connection instead
            raise ConnectionResetError("closed")


def test_over_tls_the_bound_hospitals_certificate_gets_its_ack(tmp_path):
    with started_relais(tmp_path, tls=True, networks=()) as running:
        tls = client_tls(running)
        answer = _tls_exchange(running.port, str(tls.ca_pem), str(tls.cert_pem), str(tls.cert_pem.parent / "key.pem"),
                               pam_message("A01", "TLS-OK").encode())
        assert msa(answer.lstrip(START).split(END)[0] if answer else None)[1:3] == ["AA", "TLS-OK"]

