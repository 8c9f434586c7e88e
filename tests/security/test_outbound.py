"""SSRF and delivery-amplification findings against the guarded outbound client (loopback only, bounded)."""

from __future__ import annotations

import socket
import time

import httpcore
import pytest

from shared.errors import Unprocessable
from shared.outbound import (
    GuardedBackend,
    GuardedClient,
    OutboundPolicy,
    classify,
    parse_networks,
    validate_endpoint_url,
    validate_headers,
)
from tests.security.servers import ScriptedServer, answer

pytestmark = pytest.mark.attack

LOOPBACK = parse_networks(["127.0.0.0/8", "::1/128"])
ERROR_CLASSES = {"timeout", "refused", "tls", "dns", "blocked_address", "too_large", "connection"}

INWARD = [
    "https://127.0.0.1/hook",
    "https://127.1.2.3:8443/hook",
    "https://0.0.0.0/hook",
    "https://[::1]/hook",
    "https://[::]/hook",
    "https://10.0.0.8/hook",
    "https://172.16.5.4/hook",
    "https://192.168.1.1/hook",
    "https://100.64.0.1/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[fd00:ec2::254]/latest/meta-data/",
    "https://[fd12:3456::1]/hook",
    "https://[fe80::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[64:ff9b::a00:1]/hook",
    "https://[2002:7f00:1::]/hook",
    "https://224.0.0.1/hook",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://localhost/hook",
    "https://api.localhost/hook",
]


@pytest.mark.parametrize("url", INWARD)
def test_inward_endpoints_are_refused_at_registration(url):
    with pytest.raises(Unprocessable) as raised:
        validate_endpoint_url(url, OutboundPolicy())
    assert raised.value.status_code == 422
    assert url.split("/")[2] not in raised.value.diagnostics  # the answer does not echo the target


@pytest.mark.parametrize("url", INWARD)
def test_inward_endpoints_are_never_dialled(url):
    client = GuardedClient(OutboundPolicy(timeout_seconds=2))
    try:
        result = client.post(url, b"{}")
    finally:
        client.close()
    assert (result.ok, result.error) == (False, "blocked_address")


def test_a_name_that_resolves_inward_is_refused_at_connect_time():
    # "2130706433" is 127.0.0.1 to the resolver: since issue 19 the registration check reads it the same way
    # (before, it passed registration and only the connect-time check could tell); neither lets it through.
    with ScriptedServer(answer()) as server:
        url = f"https://2130706433:{server.port}/hook"
        with pytest.raises(Unprocessable):
            validate_endpoint_url(url, OutboundPolicy())
        client = GuardedClient(OutboundPolicy(timeout_seconds=2, allow_http=True))
        try:
            result = client.post(url.replace("https", "http"), b"{}")
        finally:
            client.close()
    assert result.error == "blocked_address"
    assert server.connections == 0


def test_dns_rebinding_is_checked_on_every_connection(monkeypatch):
    answers = iter(["93.184.216.34", "127.0.0.1"])

    def rebinding(host, port, type=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    backend = GuardedBackend(OutboundPolicy())
    assert [str(a) for a in backend.resolve("hooks.example.org", 443, 1.0)] == ["93.184.216.34"]
    with pytest.raises(Exception) as raised:
        backend.resolve("hooks.example.org", 443, 1.0)
    assert classify(raised.value) == "blocked_address"


def test_a_name_with_any_inward_address_is_refused(monkeypatch):
    def mixed(host, port, type=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    with pytest.raises(Exception) as raised:
        GuardedBackend(OutboundPolicy()).resolve("hooks.example.org", 443, 1.0)
    assert classify(raised.value) == "blocked_address"


def test_failed_resolution_is_the_dns_class(monkeypatch):
    def fail(*_args, **_kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "no such name")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    client = GuardedClient(OutboundPolicy(timeout_seconds=2))
    try:
        assert client.post("https://hooks.example.org/x", b"{}").error == "dns"
    finally:
        client.close()


def test_allow_listed_network_is_reachable_and_metadata_never_is():
    policy = OutboundPolicy(allowed_networks=LOOPBACK + parse_networks(["169.254.0.0/16"]), allow_http=True,
                            timeout_seconds=5)
    with ScriptedServer(answer(204, b"")) as server:
        client = GuardedClient(policy)
        try:
            result = client.post(f"http://127.0.0.1:{server.port}/hook", b"{}")
        finally:
            client.close()
    assert (result.ok, result.status, result.error) == (True, 204, None)
    with pytest.raises(Unprocessable):
        validate_endpoint_url("http://169.254.169.254/", policy)


def test_redirects_are_not_followed():
    with ScriptedServer(answer()) as target:
        location = f"Location: http://127.0.0.1:{target.port}/inside\r\n"
        with ScriptedServer(answer(302, b"", location)) as server:
            client = GuardedClient(OutboundPolicy(allowed_networks=LOOPBACK, allow_http=True, timeout_seconds=5))
            try:
                result = client.post(f"http://127.0.0.1:{server.port}/hook", b"{}")
            finally:
                client.close()
        assert target.connections == 0
    assert (result.ok, result.error) == (False, "http_302")


def _flood(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
    chunk = b"x" * 65536
    for _ in range(1600):  # 100 MB if the client kept reading; it stops after a few KB
        conn.sendall(chunk)


def test_a_huge_answer_is_cut_after_a_few_kilobytes():
    with ScriptedServer(_flood) as server:
        client = GuardedClient(OutboundPolicy(allowed_networks=LOOPBACK, allow_http=True, timeout_seconds=10,
                                              max_response_bytes=4096))
        try:
            result = client.post(f"http://127.0.0.1:{server.port}/hook", b"{}")
        finally:
            client.close()
    assert (result.ok, result.status, result.error) == (False, 200, "too_large")
    assert len(result.body) <= 4096


def _drip(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
    for _ in range(20):  # one byte every 0.2 s: each read is quick, the whole answer takes 4 s
        conn.sendall(b"x")
        time.sleep(0.2)


def test_one_total_deadline_per_attempt_not_per_read():
    # Per-phase timeouts (1 s each) would never fire here; the 1 s total deadline does.
    with ScriptedServer(_drip) as server:
        client = GuardedClient(OutboundPolicy(allowed_networks=LOOPBACK, allow_http=True, timeout_seconds=1))
        try:
            result = client.post(f"http://127.0.0.1:{server.port}/hook", b"{}")
        finally:
            client.close()
    assert (result.ok, result.error) == (False, "timeout")


def test_closed_port_is_a_class_not_a_message():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    client = GuardedClient(OutboundPolicy(allowed_networks=LOOPBACK, allow_http=True, timeout_seconds=2))
    try:
        result = client.post(f"http://127.0.0.1:{port}/hook", b"{}")
    finally:
        client.close()
    assert result.error == "refused"
    assert result.error in ERROR_CLASSES


def test_tls_failure_is_the_tls_class():
    with ScriptedServer(answer(), read_first=False) as server:  # a plain-HTTP server spoken to in TLS
        client = GuardedClient(OutboundPolicy(allowed_networks=LOOPBACK, timeout_seconds=2))
        try:
            result = client.post(f"https://127.0.0.1:{server.port}/hook", b"{}")
        finally:
            client.close()
    assert result.error == "tls"


def test_http_is_refused_where_the_policy_wants_https():
    with pytest.raises(Unprocessable):
        validate_endpoint_url("http://hooks.example.org/x", OutboundPolicy())
    assert validate_endpoint_url("http://hooks.example.org/x", OutboundPolicy(allow_http=True))


@pytest.mark.parametrize("url", ["https://user:pw@hooks.example.org/x", "https://@hooks.example.org/x",
                                 "ftp://hooks.example.org/x", "https:///x", "https://hooks.example.org/x\r\nX: y",
                                 "https://hooks.example.org:99999/x", "https://hooks.example.org/#frag",
                                 "https://hooks.example.org/" + "a" * 3000])
def test_malformed_or_credentialed_urls_are_refused(url):
    with pytest.raises(Unprocessable):
        validate_endpoint_url(url, OutboundPolicy())


@pytest.mark.parametrize("headers", [
    {"Host": "internal.example"},
    {"host": "internal.example"},
    {"Content-Length": "0"},
    {"Transfer-Encoding": "chunked"},
    {"Relais-Delivery-Id": "forged"},
    {"relais-signature": "forged"},
    {"X-Forwarded-For": "10.0.0.1"},
    {"X-Ok": "a\r\nHost: evil"},
    {"X-Ok": "a\x00b"},
    {"Bad Name": "x"},
    {f"X-H{i}": "v" for i in range(20)},
    ["Host: internal.example"],
    ["no-colon"],
])
def test_reserved_or_malformed_headers_are_refused(headers):
    with pytest.raises(Unprocessable):
        validate_headers(headers)


def test_authorization_can_be_reserved_by_the_caller():
    assert validate_headers(["Authorization: Bearer abc"]) == {"Authorization": "Bearer abc"}
    with pytest.raises(Unprocessable):
        validate_headers({"Authorization": "x"}, also_reserved={"authorization"})


def test_our_headers_win_over_registrant_headers():
    seen: list[bytes] = []

    def record(conn: socket.socket) -> None:
        answer(200)(conn)

    import tests.security.servers as servers

    original = servers.read_request

    def capture(conn):
        head = original(conn)
        seen.append(head)
        return head

    servers.read_request = capture
    try:
        with ScriptedServer(record) as server:
            client = GuardedClient(OutboundPolicy(allowed_networks=LOOPBACK, allow_http=True, timeout_seconds=5))
            try:
                result = client.post(f"http://127.0.0.1:{server.port}/h", b"{}", headers={"X-Tag": "ours"},
                                     extra_headers={"X-Tag": "theirs", "X-Other": "kept"})
            finally:
                client.close()
    finally:
        servers.read_request = original
    assert result.ok
    assert b"X-Tag: ours" in seen[0] and b"theirs" not in seen[0] and b"X-Other: kept" in seen[0]


def test_unix_sockets_are_refused():
    with pytest.raises(Exception) as raised:
        GuardedBackend(OutboundPolicy()).connect_unix_socket("/var/run/docker.sock")
    assert classify(raised.value) == "blocked_address"


def test_socket_operations_after_the_deadline_time_out():
    import shared.outbound as outbound

    stream = outbound._DeadlineStream(httpcore.MockStream([b"never read"]))
    token = outbound._deadline.set(time.monotonic() - 1)
    try:
        with pytest.raises(httpcore.ReadTimeout):
            stream.read(10, timeout=5)
    finally:
        outbound._deadline.reset(token)
