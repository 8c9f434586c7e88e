"""The one guarded client for every outbound call (webhooks, Subscription handshakes, heartbeats).

The host is resolved when the connection is opened and every address it resolves to is checked, so a name
that answers a public address at registration and a private one later (DNS rebinding) is still refused. The
check lives in the network backend under httpx, the only place that sees the address actually dialled.
Hand-written (not one of the young SSRF wrappers) because it also has to enforce one total deadline per
attempt at the socket level on a synchronous client, which none of them does.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpcore
import httpx

from shared.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services: refused even when an allow-listed network contains them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.com", "instance-data",
     "instance-data.ec2.internal"}
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# IPv4-compatible (::a.b.c.d, deprecated) and IPv4-translated (::ffff:0:a.b.c.d, SIIT) carry an IPv4 address too.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")

ErrorClass = str  # timeout refused tls dns blocked_address too_large connection invalid_header internal http_<status>

# Headers Relais sets itself or that steer the HTTP exchange: a registrant may never set them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "content-type", "content-encoding", "transfer-encoding", "connection",
     "keep-alive", "upgrade", "te", "trailer", "expect", "proxy-authorization", "proxy-connection",
     "user-agent", "cookie", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
     "x-real-ip", "via"}
)
RESERVED_PREFIXES = ("relais-", "x-relais-", "proxy-", ":")
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
MAX_HEADERS = 10
MAX_HEADER_VALUE = 1000
MAX_URL_LENGTH = 2000


class BlockedAddress(Exception):
    """The destination resolves to an address the outbound policy refuses (message names no address)."""


@dataclass(frozen=True)
class OutboundPolicy:
    """Which destinations are reachable: public addresses, plus networks listed explicitly."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_http: bool = False
    timeout_seconds: float = 10.0
    max_response_bytes: int = 4096

    @classmethod
    def from_settings(cls, settings: Any) -> OutboundPolicy:
        return cls(
            allowed_networks=parse_networks(settings.outbound_allowed_networks),
            allow_http=settings.resolved_outbound_allow_http,
            timeout_seconds=settings.outbound_timeout_seconds,
            max_response_bytes=settings.outbound_max_response_bytes,
        )

    def address_allowed(self, address: IPAddress) -> bool:
        address = _embedded_ipv4(address) or address
        if address in METADATA_ADDRESSES:
            return False
        if any(address in network for network in self.allowed_networks):
            return True
        return address.is_global and not address.is_multicast

    def check_host(self, host: str) -> None:
        """Refuse metadata names and IP literals outside the policy (names are checked again at connect)."""
        name = host.strip("[]").rstrip(".").lower()
        if name in METADATA_HOSTS or name == "localhost" or name.endswith(".localhost"):
            raise BlockedAddress("destination host is not allowed")
        address = literal_address(host)
        if address is None:
            return
        if not self.address_allowed(address):
            raise BlockedAddress("destination address is not allowed")


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip())


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one tunnels to (mapped, 6to4, Teredo, NAT64), judged instead of the wrapper."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    if any(address in network for network in (*_NAT64, _IPV4_TRANSLATED)):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    compatible = address in _IPV4_COMPATIBLE and int(address) > 1  # :: and ::1 are judged as themselves
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if compatible else None


def literal_address(host: str) -> IPAddress | None:
    """The address a host names when it is an IP literal in any spelling the C resolver accepts (octal
    `0177.0.0.1`, zero-padded `127.000.000.001`, decimal `2130706433`, hex, short `127.1`, bracketed IPv6 with
    or without a zone), so the policy judges the address the socket would dial; None for a name."""
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    name = name.rstrip(".").lower()
    if ":" in name:
        try:
            return ipaddress.IPv6Address(name.split("%", 1)[0])
        except ValueError:
            return None
    if not name or not _NUMERIC_HOST.match(name):
        return None
    try:
        # inet_aton is what getaddrinfo applies to a numeric host: the same reading, by the same code.
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        return None


def canonical_host(host: str) -> bool:
    """True when the host is a name, or an IP literal written the one usual way (dotted decimal, RFC 5952)."""
    address = literal_address(host)
    if address is None:
        return True
    if _embedded_ipv4(address) is not None:
        return False  # an IPv4 address dressed as IPv6 (mapped, compatible, NAT64...): write the IPv4 itself
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return bare == str(address)


# --- registration-time validation ---------------------------------------------------------------

def validate_endpoint_url(url: str, policy: OutboundPolicy, field: str = "endpoint") -> str:
    """The URL a registrant gives for callbacks: https (http only where the policy allows), no userinfo,
    an allowed host. Raises Unprocessable (422) with a message that never echoes the URL."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH or any(c in url for c in "\x00\r\n\t "):
        raise Unprocessable(f"{field} must be an absolute URL of at most {MAX_URL_LENGTH} characters",
                            expression=[field])
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Unprocessable(f"{field} is not a valid URL", expression=[field]) from exc
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme.lower() not in schemes:
        raise Unprocessable(f"{field} must use {' or '.join(schemes)}", expression=[field])
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise Unprocessable(f"{field} must not carry credentials in the URL", expression=[field])
    if not parts.hostname:
        raise Unprocessable(f"{field} must name a host", expression=[field])
    if parts.fragment:
        raise Unprocessable(f"{field} must not have a fragment", expression=[field])
    if port == 0:
        raise Unprocessable(f"{field} has an invalid port", expression=[field])
    try:
        httpx.URL(url)  # the sending client's own parser: what it cannot read is refused now, not at send time
    except (httpx.InvalidURL, ValueError) as exc:
        raise Unprocessable(f"{field} is not a valid URL", expression=[field]) from exc
    try:
        policy.check_host(parts.hostname)
    except BlockedAddress as exc:
        raise Unprocessable(f"{field} points to a destination Relais does not call", expression=[field]) from exc
    if not canonical_host(parts.hostname):
        raise Unprocessable(f"{field} must write an IP address in its usual form (dotted decimal, or IPv6 "
                            "without an embedded IPv4 address)", expression=[field])
    return url


def validate_headers(
    headers: Mapping[str, str] | Iterable[str] | None,
    *,
    also_reserved: Iterable[str] = (),
    field: str = "header",
) -> dict[str, str]:
    """Headers a registrant asks us to send (a dict, or FHIR `channel.header` lines "Name: value").

    Refuses reserved names (Host, Content-Length, Relais-*, ...), invalid names, CR/LF/NUL in values,
    and more than MAX_HEADERS; returns a clean dict. Raises Unprocessable (422)."""
    if headers is None:
        return {}
    items: list[tuple[str, str]] = []
    if isinstance(headers, Mapping):
        items = [(str(k), v) for k, v in headers.items()]
    else:
        for line in headers:
            if not isinstance(line, str) or ":" not in line:
                raise Unprocessable(f"each {field} must be 'Name: value'", expression=[field])
            name, _, value = line.partition(":")
            items.append((name.strip(), value.strip()))
    if len(items) > MAX_HEADERS:
        raise Unprocessable(f"at most {MAX_HEADERS} {field}s", expression=[field])
    reserved = RESERVED_HEADERS | {name.lower() for name in also_reserved}
    clean: dict[str, str] = {}
    for name, value in items:
        lower = name.lower()
        if not _TOKEN.match(name):
            raise Unprocessable(f"{field} name is not a valid HTTP header name", expression=[field])
        if lower in reserved or lower.startswith(RESERVED_PREFIXES):
            raise Unprocessable(f"{field} {name} is reserved and cannot be set", expression=[field])
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE or any(c in value for c in "\r\n\x00"):
            raise Unprocessable(f"{field} {name} has an invalid value", expression=[field])
        if lower in {k.lower() for k in clean}:
            raise Unprocessable(f"{field} {name} is given twice", expression=[field])
        clean[name] = value
    return clean


# --- the connection-time guard ----------------------------------------------------------------

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("relais_outbound_deadline", default=None)
# getaddrinfo has no timeout: resolving on a small pool lets the attempt's deadline bound it.
_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="relais-resolve")


def _remaining(timeout: float | None) -> float | None:
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """Every socket operation gets at most what is left of the attempt's total deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def _timeout(self, timeout: float | None, error: type[Exception]) -> float | None:
        left = _remaining(timeout)
        if left is not None and left <= 0:
            raise error("the attempt's deadline has passed")
        return left

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        stream = self._stream.start_tls(ssl_context, server_hostname, self._timeout(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves the host itself, refuses it if any address is outside the policy, dials the checked address."""

    def __init__(self, policy: OutboundPolicy, backend: httpcore.NetworkBackend | None = None) -> None:
        self._policy = policy
        self._backend = backend or httpcore.SyncBackend()

    def resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        self._policy.check_host(host)
        future = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError as exc:
            raise httpcore.ConnectTimeout("name resolution timed out") from exc
        except socket.gaierror as exc:
            raise _DnsError("name resolution failed") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not addresses or not all(self._policy.address_allowed(address) for address in addresses):
            raise BlockedAddress("destination resolves to an address Relais does not call")
        return addresses

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.resolve(host, port, _remaining(timeout))
        last: Exception | None = None
        for address in addresses:
            left = _remaining(timeout)
            if left is not None and left <= 0:
                raise httpcore.ConnectTimeout("the attempt's deadline has passed")
            try:
                stream = self._backend.connect_tcp(str(address), port, left, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
                continue
            return _DeadlineStream(stream)
        raise last or httpcore.ConnectError("no address to connect to")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise BlockedAddress("unix sockets are not outbound destinations")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _DnsError(httpcore.ConnectError):
    """Resolution failed (kept apart from a refused connection so the error class says which)."""


def guarded_transport(policy: OutboundPolicy, *, max_connections: int = 20) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False, retries=0)
    # httpx has no public hook for the network backend: swap the pool for one built on the guarded backend.
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=max_connections,
        max_keepalive_connections=max_connections // 2,
        keepalive_expiry=5.0,
        retries=0,
        network_backend=GuardedBackend(policy),
    )
    return transport


# --- the client ------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutboundResult:
    """What an attempt gave: a status (if any answer came), an error class (never raw text), a short body."""

    ok: bool
    status: int | None
    error: ErrorClass | None
    body: bytes = b""
    elapsed: float = 0.0


class GuardedClient:
    """POST/GET with no redirects, no environment proxies, a capped answer and one deadline per attempt."""

    def __init__(self, policy: OutboundPolicy, *, max_connections: int = 20,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.policy = policy
        # A test may pass its own transport (no network): the policy is then enforced on the URL only.
        self._client = httpx.Client(
            transport=transport or guarded_transport(policy, max_connections=max_connections),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(policy.timeout_seconds),
        )

    def post(self, url: str, content: bytes, *, headers: Mapping[str, str] | None = None,
             extra_headers: Mapping[str, str] | None = None) -> OutboundResult:
        return self.request("POST", url, content=content, headers=headers, extra_headers=extra_headers)

    def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> OutboundResult:
        return self.request("GET", url, headers=headers)

    def request(
        self,
        method: Literal["GET", "POST", "PUT"],
        url: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> OutboundResult:
        """`headers` are Relais' own; `extra_headers` come from a registrant and are validated again here."""
        started = time.monotonic()
        try:
            merged = {**validate_headers(extra_headers or {}), **(headers or {})}
        except Unprocessable:
            return OutboundResult(False, None, "invalid_header")
        try:
            validate_endpoint_url(url, self.policy)
        except Unprocessable:
            return OutboundResult(False, None, "blocked_address")
        token = _deadline.set(started + self.policy.timeout_seconds)
        try:
            return self._attempt(method, url, content, merged, started)
        except Exception as exc:  # noqa: BLE001 - an attempt never raises: whatever failed is its error class
            return OutboundResult(False, None, classify(exc), elapsed=time.monotonic() - started)
        finally:
            _deadline.reset(token)

    def _attempt(self, method: str, url: str, content: bytes | None, headers: dict[str, str],
                 started: float) -> OutboundResult:
        limit = self.policy.max_response_bytes
        with self._client.stream(method, url, content=content, headers=headers) as response:
            body = bytearray()
            # A test transport hands back an already-read answer; a network one streams it.
            chunks = [response.content] if response.is_stream_consumed else response.iter_raw(chunk_size=1024)
            for chunk in chunks:
                body.extend(chunk)
                if len(body) > limit:
                    # Closing mid-answer drops the connection: nothing more is read.
                    return OutboundResult(False, response.status_code, "too_large", bytes(body[:limit]),
                                          time.monotonic() - started)
            status = response.status_code
        ok = 200 <= status < 300
        return OutboundResult(ok, status, None if ok else f"http_{status}", bytes(body), time.monotonic() - started)

    def close(self) -> None:
        self._client.close()


def classify(exc: BaseException) -> ErrorClass:
    """An exception as one of the stored error classes (no message, no address, no port)."""
    if isinstance(exc, BlockedAddress):
        return "blocked_address"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, _DnsError | socket.gaierror) for e in chain):
        return "dns"
    if any(isinstance(e, ssl.SSLError | ssl.CertificateError) for e in chain):
        return "tls"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused"
    if any(isinstance(e, BlockedAddress) for e in chain):
        return "blocked_address"
    if isinstance(exc, httpx.HTTPError | OSError):
        return "connection"
    return "internal"  # not a network failure (a bug, an unreadable URL): named apart so it is looked at
