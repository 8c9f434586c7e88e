"""A scripted loopback HTTP server for attacker-style tests: each connection runs a small script."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Script = Callable[[socket.socket], None]


class ScriptedServer:
    """Listens on 127.0.0.1 (or ::1); counts connections; every connection is handled by `script`."""

    def __init__(self, script: Script, family: socket.AddressFamily = socket.AF_INET, read_first: bool = True) -> None:
        self.script = script
        self.read_first = read_first
        self.connections = 0
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        for worker in self._workers:
            worker.join(timeout=5)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            worker = threading.Thread(target=self._run, args=(conn,), daemon=True)
            worker.start()
            self._workers.append(worker)

    def _run(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        try:
            if self.read_first:
                read_request(conn)
            self.script(conn)
        except OSError:
            pass
        finally:
            conn.close()


def read_request(conn: socket.socket) -> bytes:
    """Read the request head and a Content-Length body (bounded)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def answer(status: int = 200, body: bytes = b"ok", headers: str = "") -> Script:
    def script(conn: socket.socket) -> None:
        conn.sendall(
            f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{headers}\r\n".encode() + body
        )

    return script
