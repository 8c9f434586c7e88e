"""An HL7 v2 message as the wire carried it: decoded per MSH-18, parsed with python-hl7, read by field path.

Only the MSH header is looked at before decoding (its field 18 names the character set, and MSH is ASCII by
rule); everything else is python-hl7's parser. Segment separators CR, LF and CRLF are all read as CR, which is
what the standard says and what python-hl7 splits on.
"""

from __future__ import annotations

from dataclasses import dataclass

import hl7

__all__ = ["MAX_SEGMENTS", "Hl7Header", "Hl7Message", "NotReadable", "parse_message"]

# MSH-18 values PAM France allows, and their Python codecs; absent means the HL7 default (ASCII, read as UTF-8).
CHARSETS = {
    "": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "8859/1": "iso-8859-1",
    "8859/15": "iso-8859-15",
    "ASCII": "ascii",
}
# A PAM message has tens of segments: far more is not a patient-administration message (and costs CPU to split).
MAX_SEGMENTS = 1000


class NotReadable(Exception):
    """A frame Relais cannot read as an HL7 v2 message: answered AR (or closed when no MSH can be read)."""

    def __init__(self, reason: str, *, field: str = "MSH", header: Hl7Header | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.header = header


@dataclass(frozen=True)
class Hl7Header:
    """What the ACK needs from MSH, read before the body is decoded (raw ASCII fields)."""

    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str  # MSH-4, first component: what the directory binds to a hospital
    receiving_application: str
    receiving_facility: str
    message_type: str  # MSH-9.1
    trigger: str  # MSH-9.2
    control_id: str  # MSH-10
    processing_id: str  # MSH-11
    version: str  # MSH-12
    accept_ack_type: str  # MSH-15 (enhanced mode when present)
    application_ack_type: str  # MSH-16
    charset: str  # MSH-18 as sent
    codec: str  # the Python codec for it

    @property
    def enhanced(self) -> bool:
        return bool(self.accept_ack_type or self.application_ack_type)


def _normalise_separators(frame: bytes) -> bytes:
    return frame.replace(b"\r\n", b"\r").replace(b"\n", b"\r")


def read_header(frame: bytes) -> Hl7Header:
    """MSH of a frame (CR/LF/CRLF separators); NotReadable when there is no usable MSH."""
    data = _normalise_separators(frame).lstrip(b"\r")
    if not data.startswith(b"MSH") or len(data) < 8:
        raise NotReadable("the message does not start with an MSH segment")
    first = data.split(b"\r", 1)[0].decode("latin-1")
    separator, encoding_characters = first[3], first[4:8].split(first[3], 1)[0]
    if separator.isalnum() or len(encoding_characters) < 3 or "\x00" in first:
        raise NotReadable("MSH-1 and MSH-2 are not usable separators", field="MSH-2")
    fields = first.split(separator)  # fields[n - 1] is MSH-n (MSH-1 is the separator itself)
    component = encoding_characters[0]

    def value(n: int, part: int = 0) -> str:
        raw = fields[n - 1] if n - 1 < len(fields) else ""
        parts = raw.split(component)
        return parts[part].strip() if part < len(parts) else ""

    charset = value(18)
    codec = CHARSETS.get(charset.upper())
    header = Hl7Header(
        field_separator=separator,
        encoding_characters=encoding_characters,
        sending_application=value(3),
        sending_facility=value(4),
        receiving_application=value(5),
        receiving_facility=value(6),
        message_type=value(9, 0),
        trigger=value(9, 1),
        control_id=value(10),
        processing_id=value(11),
        version=value(12),
        accept_ack_type=value(15),
        application_ack_type=value(16),
        charset=charset,
        codec=codec or "utf-8",
    )
    if codec is None:
        raise NotReadable(f"MSH-18 character set {charset[:30]!r} is not supported", field="MSH-18", header=header)
    if not header.control_id:
        raise NotReadable("MSH-10 (message control id) is required", field="MSH-10", header=header)
    if len(header.control_id) > 199:
        raise NotReadable("MSH-10 is longer than 199 characters", field="MSH-10", header=header)
    return header


@dataclass(frozen=True)
class Hl7Message:
    header: Hl7Header
    parsed: hl7.Message
    raw: bytes

    def segments(self, name: str) -> list[hl7.Segment]:
        return [segment for segment in self.parsed if str(segment[0]) == name]

    def segment(self, name: str) -> hl7.Segment | None:
        found = self.segments(name)
        return found[0] if found else None

    def value(self, segment: hl7.Segment | None, field: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
        """One value, unescaped, or "" when absent (1-based positions, as the standard counts them)."""
        if segment is None:
            return ""
        try:
            found = segment.extract_field(1, field, rep, comp, sub)
        except (IndexError, KeyError):
            return ""
        return self.parsed.unescape(str(found)).strip() if found else ""


def parse_message(frame: bytes) -> Hl7Message:
    """Decode per MSH-18 and parse; NotReadable (with the header when it was read) for anything else."""
    header = read_header(frame)
    data = _normalise_separators(frame)
    if b"\x00" in data:
        raise NotReadable("the message contains NUL bytes", field="MSH", header=header)
    if data.count(b"\r") > MAX_SEGMENTS:
        raise NotReadable(f"more than {MAX_SEGMENTS} segments", field="MSH", header=header)
    try:
        text = data.decode(header.codec)
    except UnicodeDecodeError as exc:
        raise NotReadable(
            f"the message is not valid {header.charset or 'UTF-8'} (byte at offset {exc.start})",
            field="MSH-18",
            header=header,
        ) from exc
    try:
        parsed = hl7.parse(text)
    except Exception as exc:  # python-hl7 raises several classes on malformed input
        raise NotReadable(f"the message cannot be parsed ({type(exc).__name__})", header=header) from exc
    return Hl7Message(header, parsed, frame)
