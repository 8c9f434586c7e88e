"""Relais' own MSSanté mailbox, read over IMAP by a supervised worker: each unseen mail is offered to the
receipt handler, then flagged seen. A slow or broken mailbox costs one poll (bounded by the timeout), never
the worker; a mail larger than a receipt can be is flagged seen unread."""

from __future__ import annotations

import imaplib
import logging
import re
import threading
from collections.abc import Callable

from services.notifications.mssante.receipts import MAX_REPORT_BYTES, RecordMailReceipt, parse_report
from services.notifications.mssante.transport import Server
from services.notifications.mssante.transport import error_class as _error_class

log = logging.getLogger(__name__)
PER_POLL = 100
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def _connect(target: Server) -> imaplib.IMAP4:
    if target.implicit_tls:
        return imaplib.IMAP4_SSL(target.host, target.port, ssl_context=target.context, timeout=target.timeout)
    client = imaplib.IMAP4(target.host, target.port, timeout=target.timeout)
    if "STARTTLS" in client.capabilities:
        client.starttls(ssl_context=target.context)
    elif target.tls_required:
        client.shutdown()
        raise imaplib.IMAP4.error("tls_unavailable")
    return client


def _size(client: imaplib.IMAP4, number: str) -> int:
    _, data = client.fetch(number, "(RFC822.SIZE)")
    match = _SIZE.search(data[0] if isinstance(data[0], bytes) else b"")
    return int(match.group(1)) if match else MAX_REPORT_BYTES + 1


def poll(target: Server, handle: Callable[[bytes], object]) -> int:
    """Read up to PER_POLL unseen mails; a mail is flagged seen only once `handle` returned."""
    seen = 0
    with _connect(target) as client:
        client.login(target.username or "", target.password or "")
        client.select("INBOX")
        _, data = client.search(None, "UNSEEN")
        for number in (data[0] or b"").decode("ascii", "replace").split()[:PER_POLL]:
            if _size(client, number) <= MAX_REPORT_BYTES:
                _, parts = client.fetch(number, "(BODY.PEEK[])")
                raw = next((p[1] for p in parts if isinstance(p, tuple)), b"")
                handle(raw)
            client.store(number, "+FLAGS", "\\Seen")
            seen += 1
    return seen


class ReceiptReader:
    def __init__(self, target: Server, handle: Callable[[object], object], interval: float) -> None:
        self._target = target
        self._handle = handle
        self._interval = interval

    def read_once(self) -> int:
        def offer(raw: bytes) -> None:
            report = parse_report(raw)
            if report is not None:
                self._handle(RecordMailReceipt(report))

        return poll(self._target, offer)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.read_once()
            except Exception as exc:  # noqa: BLE001 - the next poll tries again; the class only, no mail content
                log.warning("MSSanté mailbox poll failed: %s", _error_class(exc)[1])
            stop.wait(self._interval)
