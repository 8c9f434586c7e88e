"""Receipts as a practice software and an operator write them (RFC 8098 MDN, RFC 3464 DSN), built with `email`."""

from __future__ import annotations

from email.message import EmailMessage, Message
from email.utils import make_msgid


def _report(kind: str, sender: str, to: str, subject: str, human: str) -> EmailMessage:
    report = EmailMessage()
    report["From"], report["To"], report["Subject"] = sender, to, subject
    report["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    report.set_content(human)
    report.make_mixed()
    report.replace_header("Content-Type", f"multipart/report; report-type={kind}")
    return report


def _fields_part(content_type: str, fields: list[tuple[str, str]]) -> Message:
    part = Message()
    part["Content-Type"] = content_type
    part.set_payload("\r\n".join(f"{name}: {value}" for name, value in fields) + "\r\n")
    return part


def mdn(original_id: str, *, reader: str, to: str, disposition: str = "displayed", error: str | None = None) -> bytes:
    """What the team's software sends back: `disposition` is e.g. displayed, processed, processed/error."""
    report = _report("disposition-notification", reader, to, "Accusé de lecture", "Votre message a été lu.")
    fields = [("Reporting-UA", "lgc.example; LGC 1.0"), ("Final-Recipient", f"rfc822; {reader}"),
              ("Original-Message-ID", original_id),
              ("Disposition", f"manual-action/MDN-sent-manually; {disposition}")]
    if error:
        fields.append(("Error", error))
    report.attach(_fields_part("message/disposition-notification", fields))
    return report.as_bytes()


def dsn(original_id: str, *, recipient: str, to: str, action: str = "failed", status: str = "5.1.1",
        operator: str = "mailer-daemon@operateur.mssante.fr") -> bytes:
    """What the operator's server sends back when it cannot deliver (or did deliver) a mail."""
    report = _report("delivery-status", operator, to, "Undelivered Mail", "Le message n'a pas pu être remis.")
    per_message = [("Reporting-MTA", "dns; mx.operateur.mssante.fr")]
    per_recipient = [("Final-Recipient", f"rfc822; {recipient}"), ("Action", action), ("Status", status),
                     ("Diagnostic-Code", "smtp; 550 5.1.1 mailbox unknown")]
    status_part = Message()
    status_part["Content-Type"] = "message/delivery-status"
    for block in (per_message, per_recipient):
        fields = Message()
        for name, value in block:
            fields[name] = value
        status_part.attach(fields)
    report.attach(status_part)
    headers = Message()
    headers["Content-Type"] = "text/rfc822-headers"
    headers.set_payload(f"Message-ID: {original_id}\r\nTo: {recipient}\r\nSubject: [Relais]\r\n")
    report.attach(headers)
    return report.as_bytes()
