"""The delivery worker's one Sender, extended with the mail channel: a `mailto:` delivery becomes an MSSanté
mail submitted over SMTP; every other URL goes through the guarded HTTP sender unchanged."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from services.notifications.adapters.sender import Sender
from services.notifications.domain import Attempt
from services.notifications.mssante.channel import MAILTO
from services.notifications.mssante.letter import read_letter
from services.notifications.mssante.message import build_mail
from services.notifications.mssante.transport import MailSettingsError, Server, server, submit
from shared.settings import NotificationsSettings

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 5_000_000


class MailSender:
    """Builds the mail from the delivery body (the stored notification) at each attempt, then submits it."""

    def __init__(self, target: Server, sender: str) -> None:
        self._target = target
        self._sender = sender

    @classmethod
    def from_settings(cls, settings: NotificationsSettings) -> MailSender | None:
        if not settings.mssante_smtp_url:
            return None
        if not settings.mssante_sender:
            raise MailSettingsError("RELAIS_MSSANTE_SENDER (Relais' own MSSanté mailbox) is required with SMTP")
        target = server(settings.mssante_smtp_url, "RELAIS_MSSANTE_SMTP_URL", settings, "smtp")
        if target.tls_required is False and not target.implicit_tls:
            log.warning("MSSanté SMTP may run without TLS: development environment only")
        return cls(target, settings.mssante_sender)

    def send(self, url: str, body: bytes) -> Attempt:
        recipient = url.removeprefix(MAILTO)
        try:
            if len(body) > MAX_BODY_BYTES:
                return Attempt(False, None, "too_large")
            mail = build_mail(read_letter(json.loads(body)), sender=self._sender, recipient=recipient)
        except Exception as exc:  # noqa: BLE001 - an unbuildable mail is a failed attempt, not a dead worker
            return Attempt(False, None, f"build_{type(exc).__name__}"[:60])
        return submit(self._target, mail, self._sender, recipient)


class ChannelSender:
    def __init__(self, http: Sender, mail: MailSender | None) -> None:
        self._http = http
        self._mail = mail

    def send(
        self, url: str, headers: Mapping[str, str], body: bytes, extra_headers: Mapping[str, str] | None = None
    ) -> Attempt:
        if url.startswith(MAILTO):
            if self._mail is None:
                return Attempt(False, None, "mail_not_configured")
            return self._mail.send(url, body)
        return self._http.send(url, headers, body, extra_headers)

    def close(self) -> None:
        self._http.close()
