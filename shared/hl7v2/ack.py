"""HL7 v2 acknowledgements: MSH, MSA (MSA-2 echoes MSH-10) and, for an error, ERR naming the field.

Original mode (MSH-15 and MSH-16 empty): one application ACK, AA, AE or AR. Enhanced mode: the accept (commit)
ACK, CA once the message is stored or CR when it cannot be, sent as MSH-15 asks (AL always, ER on error, SU on
success, NE never); then the application ACK as MSH-16 asks, on the same connection (Relais opens no connection
back to the sender).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.hl7v2.message import Hl7Header

__all__ = ["AckOutcome", "acks_for", "build_ack"]

RELAIS_APPLICATION = "RELAIS"
# HL7 table 0357 codes Relais uses.
ERROR_CODES = {"AR": "200", "AE": "207"}
_ERROR_NAMES = {"100": "Segment sequence error", "101": "Required field missing", "102": "Data type error",
                "200": "Unsupported message type", "201": "Unsupported event code", "204": "Unknown key identifier",
                "207": "Application error"}
_counter = itertools.count(1)
_FIELD = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d+)$")


@dataclass(frozen=True)
class AckOutcome:
    """What Relais decided for a message: AA, AE or AR, a text, and the field an error is about."""

    code: str  # AA, AE, AR
    text: str = ""
    field: str | None = None  # e.g. "PID-18"
    error_code: str | None = None  # HL7 table 0357


def _clean(text: str, header: Hl7Header) -> str:
    """Text safe inside one field: the separators and escape character replaced (never patient data here)."""
    for char in header.field_separator + header.encoding_characters:
        text = text.replace(char, " ")
    return " ".join(text.split())[:200]


def _location(field: str | None) -> str:
    match = _FIELD.match(field or "")
    return f"{match.group(1)}^1^{match.group(2)}" if match else ""


def build_ack(header: Hl7Header, code: str, outcome: AckOutcome, now: datetime | None = None) -> str:
    """One ACK message (segments separated by CR), in the sender's separators and character set."""
    sep = header.field_separator
    comp = header.encoding_characters[0]
    moment = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    control = f"ACK{moment}{next(_counter) % 100000:05d}"
    msh = [
        "MSH", header.encoding_characters, RELAIS_APPLICATION, _clean(header.receiving_facility or "RELAIS", header),
        _clean(header.sending_application, header), _clean(header.sending_facility, header), moment, "",
        f"ACK{comp}{_clean(header.trigger, header)}{comp}ACK", control, _clean(header.processing_id or "P", header),
        _clean(header.version or "2.5", header), "", "", "", "", "", "", header.charset,
    ]
    segments = [sep.join(msh).rstrip(sep)]
    msa = ["MSA", code, _clean(header.control_id, header), _clean(outcome.text, header)]
    segments.append(sep.join(msa).rstrip(sep))
    if code not in ("AA", "CA"):
        error = outcome.error_code or ERROR_CODES.get(outcome.code, "207")
        cwe = f"{error}{comp}{_ERROR_NAMES.get(error, 'Application error')}{comp}HL70357"
        severity = "E"
        segments.append(sep.join(["ERR", "", _location(outcome.field), cwe, severity, "", "", "",
                                  _clean(outcome.text, header)]).rstrip(sep))
    return "\r".join(segments) + "\r"


def _wanted(condition: str, success: bool) -> bool:
    condition = condition.upper() or "AL"
    return condition == "AL" or (condition == "ER" and not success) or (condition == "SU" and success)


def acks_for(header: Hl7Header, outcome: AckOutcome) -> list[str]:
    """The ACK messages to send back for this outcome, as MSH-15 and MSH-16 ask."""
    if not header.enhanced:
        return [build_ack(header, outcome.code, outcome)]
    stored = outcome.code != "AR"
    acks = []
    if header.accept_ack_type and _wanted(header.accept_ack_type, stored):
        acks.append(build_ack(header, "CA" if stored else "CR", outcome))
    if header.application_ack_type and _wanted(header.application_ack_type, outcome.code == "AA"):
        acks.append(build_ack(header, outcome.code, outcome))
    return acks
