"""The MLLP listener: frames 0x0B ... 0x1C 0x0D over TCP or TLS, each answered by the HL7 v2 door.

- asyncio for the connections (many at once, cheap); the door's work (parsing, the database) runs in a thread
  pool, never on the event loop; a connection's next frame is read only once the previous one is answered, so the
  messages of one connection are handled in order.
- Limits: a frame larger than `max_message_bytes`, bytes outside a frame, no frame started within `idle_seconds`
  or a frame not whole within `read_seconds` close the connection (cleanly: nothing half-processed, no ACK). A
  peer from no registered network (plain MLLP) or whose certificate names no bound hospital (TLS) is closed at
  once, audited. At most `max_connections` at a time.
- The listener runs in its own thread with its own event loop, beside the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.hl7v2.door import Hl7Door, Peer
from shared.hl7v2.settings import MllpSettings, server_tls_context
from shared.hl7v2.store import ACK_TABLE
from shared.retention import PurgeRule, RetentionWorker

__all__ = ["END", "START", "MllpServer", "certificate_hospital", "frame", "listener_worker"]

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
_BETWEEN_FRAMES = b"\r\n"  # some senders end a frame with a newline too: tolerated between frames


def frame(message: bytes) -> bytes:
    return START + message + END


def certificate_hospital(peercert: Any) -> str | None:
    """The hospital a verified client certificate names: its subject CN (the organisation id, e.g. FINESS)."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName" and value:
                return str(value)
    return None


class MllpServer:
    def __init__(self, door: Hl7Door, settings: MllpSettings, ssl_context: ssl.SSLContext | None = None) -> None:
        self.door = door
        self.settings = settings
        self.ssl_context = ssl_context
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._connections = 0
        self._executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="mllp")

    # --- lifecycle -----------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> int:
        """Listen in a background thread; the bound port (settings.port 0 picks a free one)."""
        self._thread = threading.Thread(target=self._run, name="mllp-listener", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.port is None:
            raise RuntimeError("the MLLP listener did not start")
        return self.port

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        limit = self.settings.max_message_bytes + len(END) + 1
        try:
            self._server = await asyncio.start_server(
                self._connection, self.settings.host, self.settings.port or 0, ssl=self.ssl_context, limit=limit
            )
            self.port = self._server.sockets[0].getsockname()[1]
        finally:
            self._ready.set()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._server is None:
            return
        server = self._server

        async def close() -> None:
            server.close()
            # Open connections end here: their frames in flight are either answered or never acknowledged.
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
            loop.stop()

        asyncio.run_coroutine_threadsafe(close(), loop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- one connection ------------------------------------------------------------------------------------

    def _peer(self, writer: asyncio.StreamWriter) -> Peer:
        address = writer.get_extra_info("peername")
        host = str(address[0]) if isinstance(address, tuple) and address else ""
        if self.ssl_context is None:
            return Peer(host)
        return Peer(host, certificate_hospital(writer.get_extra_info("peercert")), tls=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = self._peer(writer)
        loop = asyncio.get_running_loop()
        try:
            admitted = self._connections < self.settings.max_connections and await loop.run_in_executor(
                self._executor, self._admit, peer
            )
        except Exception as exc:  # noqa: BLE001 - the directory unreachable: refused for now, the sender retries
            log.warning("hl7v2: connection refused on %s", type(exc).__name__)
            admitted = False
        if not admitted:
            await _close(writer)
            return
        self._connections += 1
        try:
            await self._serve(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass  # the peer went away, or overran a deadline: nothing half-processed
        except asyncio.LimitOverrunError:
            await loop.run_in_executor(self._executor, self._refuse, peer, "MLLP frame larger than the limit")
        except Exception as exc:  # noqa: BLE001 - e.g. the directory unreachable: closed, the sender sends again
            log.warning("hl7v2: connection closed on %s", type(exc).__name__)  # the class only: no message text
        finally:
            self._connections -= 1
            await _close(writer)

    def _admit(self, peer: Peer) -> bool:
        if self.door.senders.may_connect(peer):
            return True
        reason = "TLS certificate names no bound hospital" if peer.tls else "peer outside registered networks"
        self._refuse(peer, reason)
        return False

    def _refuse(self, peer: Peer, reason: str) -> None:
        self.door.refuse(peer, peer.certificate_org, reason)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        while True:
            message = await self._read_frame(reader)
            if message is None:
                return
            acks = await loop.run_in_executor(self._executor, self.door.answer, message, peer)
            if acks is None:
                return  # no MSH to answer to, or a transient failure: the sender sends again
            for ack in acks:
                writer.write(frame(ack))
            await asyncio.wait_for(writer.drain(), self.settings.read_seconds)

    async def _read_frame(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next frame's content, or None at a clean end of stream or bad framing."""
        while True:
            first = await asyncio.wait_for(reader.read(1), self.settings.idle_seconds)
            if not first:
                return None
            if first == START:
                break
            if first not in _BETWEEN_FRAMES:
                return None  # bytes outside a frame: not MLLP, closed
        body = await asyncio.wait_for(reader.readuntil(END), self.settings.read_seconds)
        content = body[: -len(END)]
        if len(content) > self.settings.max_message_bytes or START in content:
            return None
        return content


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 2)


def listener_worker(door: Hl7Door, settings: MllpSettings) -> Callable[[threading.Event], None]:
    """A supervised worker (shared.runtime) running the listener until the service stops."""
    retention = RetentionWorker(
        door.store.engine, [PurgeRule("hl7_ack", ACK_TABLE, "created_at", settings.ack_retention_days)], source="hl7v2"
    )

    def run(stop: threading.Event) -> None:
        server = MllpServer(door, settings, server_tls_context(settings))
        purging = threading.Thread(target=retention.run, args=(stop,), name="hl7v2-retention", daemon=True)
        purging.start()
        port = server.start()
        log.info("MLLP listener on %s:%s (%s)", settings.host, port, "TLS" if settings.tls else "plain")
        try:
            stop.wait()
        finally:
            server.stop()

    return run
