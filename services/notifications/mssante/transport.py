"""The operator's servers as Relais reaches them: SMTP submission and the IMAP mailbox, both over TLS (implicit,
or STARTTLS), with the structure's client certificate when the operator asks for one. Plain connections are
refused outside development. Errors come back as classes, never as exceptions or server texts."""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from services.notifications.domain import Attempt
from shared.settings import NotificationsSettings

SCHEMES = {"smtp": (587, False), "smtps": (465, True), "imap": (143, False), "imaps": (993, True)}


class MailSettingsError(ValueError):
    """A mail URL or TLS file Relais cannot use (the message names the setting, never a password)."""


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    implicit_tls: bool
    tls_required: bool
    username: str | None
    password: str | None
    timeout: float
    context: ssl.SSLContext


def tls_context(settings: NotificationsSettings) -> ssl.SSLContext:
    """Server certificates checked against the CA file (the operator's chain) or the system's; our client
    certificate presented when configured."""
    try:
        context = ssl.create_default_context(cafile=settings.mssante_ca_file)
        if settings.mssante_cert_file:
            context.load_cert_chain(settings.mssante_cert_file, settings.mssante_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise MailSettingsError(f"RELAIS_MSSANTE_CA_FILE/CERT_FILE/KEY_FILE unusable ({type(exc).__name__})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server(url: str, setting: str, settings: NotificationsSettings, protocol: str) -> Server:
    parts = urlsplit(url)
    if parts.scheme not in (protocol, protocol + "s") or not parts.hostname:
        raise MailSettingsError(f"{setting} must be {protocol}://host[:port] or {protocol}s://host[:port]")
    default_port, implicit = SCHEMES[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise MailSettingsError(f"{setting} has an invalid port") from None
    return Server(
        host=parts.hostname,
        port=port,
        implicit_tls=implicit,
        tls_required=settings.environment != "development",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=settings.mssante_timeout_seconds,
        context=tls_context(settings),
    )


def error_class(exc: BaseException) -> tuple[int | None, str]:
    """(SMTP code, error class) of a failed submission: 4xx is temporary, 5xx permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = next(iter(exc.recipients.values()))[0] if exc.recipients else None
        return code, f"smtp_{code}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code, f"smtp_{exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return None, "tls_unavailable"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib reports a read that timed out as a disconnection; the timeout is its context.
        return None, "timeout" if isinstance(exc.__context__, TimeoutError) else "disconnected"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return None, "tls"
    if isinstance(exc, TimeoutError | socket.timeout):
        return None, "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return None, "refused"
    if isinstance(exc, OSError):
        return None, "network"
    return None, f"error_{type(exc).__name__}"[:60]


def submit(target: Server, mail: EmailMessage, sender: str, recipient: str) -> Attempt:
    """One SMTP transaction. A server offering DSN is asked for failure and delay reports (RFC 3461)."""
    try:
        client: smtplib.SMTP
        if target.implicit_tls:
            client = smtplib.SMTP_SSL(target.host, target.port, timeout=target.timeout, context=target.context)
        else:
            client = smtplib.SMTP(target.host, target.port, timeout=target.timeout)
        with client:
            client.ehlo()
            if not target.implicit_tls:
                if client.has_extn("starttls"):
                    client.starttls(context=target.context)
                    client.ehlo()
                elif target.tls_required:
                    return Attempt(False, None, "tls_unavailable")
            if target.username:
                client.login(target.username, target.password or "")
            dsn = client.has_extn("dsn")
            envelope_id = mail["Message-ID"].strip("<>")
            client.send_message(
                mail,
                from_addr=sender,
                to_addrs=[recipient],
                mail_options=["RET=HDRS", f"ENVID={envelope_id}"] if dsn else [],
                rcpt_options=["NOTIFY=FAILURE,DELAY"] if dsn else [],
            )
        return Attempt(True, 250, None)
    except Exception as exc:  # noqa: BLE001 - every failure is an attempt's outcome, never the worker's crash
        code, error = error_class(exc)
        return Attempt(False, code, error, permanent=code is not None and 500 <= code < 600)
