"""The mail itself (standard `email` package): a French subject, a short readable body, the XDM zip, a request
for a disposition notification, and a Message-ID derived from the notification and the recipient, so every
retry of one notification is the same mail and its receipts find their way back."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from services.notifications.mssante.cda import cda_document
from services.notifications.mssante.letter import Letter, french_date
from services.notifications.mssante.pdf import pdf_document
from services.notifications.mssante.xdm import ZIP_NAME, derived_id, xdm_zip

_MESSAGE_ID = re.compile(r"^<?(?P<id>[A-Za-z0-9\-.]{1,64})\.(?P<hash>[0-9a-f]{16})@[A-Za-z0-9\-.]{1,253}>?$")


def address_hash(address: str) -> str:
    return hashlib.sha256(address.lower().encode()).hexdigest()[:16]


def message_id(notification_id: str, recipient: str, sender: str) -> str:
    """`<notification-id.recipient-hash@sender-domain>`: opaque, stable, parsed back by `parse_message_id`."""
    return f"<{notification_id}.{address_hash(recipient)}@{sender.rpartition('@')[2]}>"


def parse_message_id(value: str) -> tuple[str, str] | None:
    """(notification id, recipient hash) of a Message-ID Relais set; None for anything else."""
    match = _MESSAGE_ID.match(value.strip()[:400])
    return (match.group("id"), match.group("hash")) if match else None


def subject(letter: Letter) -> str:
    """No patient identity in the subject: relays and mail clients log subjects more freely than bodies."""
    when = french_date(letter.stay_end or letter.stay_start or letter.sent_at)
    return " – ".join(part for part in (f"[Relais] {letter.title}", letter.hospital_name, when) if part)


def body_text(letter: Letter) -> str:
    born = f", né(e) le {french_date(letter.birth_date)}" if letter.birth_date else ""
    lines = ["Bonjour,", "", f"Relais vous transmet pour votre patient : {letter.title}.", ""]
    lines.append(f"Patient : {letter.patient_name}{born}" + (f" (INS {letter.ins_value})" if letter.ins_value else ""))
    stay = f"Séjour : {letter.hospital_name} (FINESS {letter.hospital_finess})"
    if letter.stay_start:
        stay += f", du {french_date(letter.stay_start)}" + (f" au {french_date(letter.stay_end)}" if letter.stay_end
                                                            else "")
    lines.append(stay + (f", séjour n° {letter.stay_number}" if letter.stay_number else ""))
    if letter.referent_name:
        contacts = " – ".join(c for c in (letter.referent_phone, letter.referent_mail) if c)
        lines.append(f"Référent hospitalier : {letter.referent_name}" + (f" – {contacts}" if contacts else ""))
    if letter.followups:
        lines += ["", "Suivis prévus :"]
        lines += [f"- {f.label}" + (f" : avant le {french_date(f.due)}" if f.due else "") for f in letter.followups]
    if letter.handoff_deadline:
        lines += ["", f"Le relai vers votre équipe attend votre réponse avant le "
                      f"{french_date(letter.handoff_deadline, True)}."]
    lines += [
        "",
        "Dans Relais : ouvrez la liste de travail de votre équipe pour accepter ou refuser le relai et suivre les "
        "échéances de suivi.",
        f"Pièce jointe : {ZIP_NAME} (IHE XDM : lettre au format CDA R2 et PDF) à intégrer au dossier du patient.",
        "",
        f"Message automatique de Relais – référence {letter.notification_id}. Merci de ne pas répondre.",
    ]
    return "\n".join(lines) + "\n"


def build_mail(letter: Letter, *, sender: str, recipient: str) -> EmailMessage:
    """Addresses were checked when registered; every other header value comes cleaned from the letter, and
    the `email` policy refuses CR/LF in a header value anyway."""
    mail = EmailMessage()
    mail["From"] = Address(display_name="Relais", addr_spec=sender)
    mail["To"] = Address(addr_spec=recipient)
    mail["Subject"] = subject(letter)
    mail["Message-ID"] = message_id(letter.notification_id, recipient, sender)
    mail["Date"] = _date(letter.sent_at)
    mail["Disposition-Notification-To"] = str(Address(addr_spec=sender))
    mail["X-Relais-Event"] = letter.event
    mail.set_content(body_text(letter), charset="utf-8", cte="quoted-printable")
    cda = cda_document(letter, derived_id(letter, "cda"))
    pdf = pdf_document(letter)
    mail.add_attachment(xdm_zip(letter, cda, pdf, recipient), maintype="application", subtype="zip",
                        filename=ZIP_NAME)
    return mail


def _date(sent_at: str) -> str:
    """The notification's own time, so a retried mail carries the same Date."""
    try:
        moment = datetime.fromisoformat(sent_at.replace("Z", "+00:00"))
    except ValueError:
        moment = datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment)

