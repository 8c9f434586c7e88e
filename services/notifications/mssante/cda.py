"""The letter as an HL7 CDA R2 document (structured header, narrative body), built with lxml."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from lxml import etree

from services.notifications.mssante.letter import Letter, french_date

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
LOINC = "2.16.840.1.113883.6.1"
# IDNST: a structure's national identifier; a FINESS number is prefixed with "1" in it.
IDNST = "1.2.250.1.71.4.2.2"
_STAY_NAMESPACE = uuid.UUID("5f0b1c62-7f0e-4d7e-9a57-2a8b3c1e9d40")
DOCUMENT_CODE = ("34133-9", "Summary of episode note")
_GENDER = {"female": "F", "male": "M", "other": "U", "unknown": "U"}


def _el(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{HL7}}}{tag}", {k: v for k, v in attrs.items() if v})
    if text:
        element.text = text
    return element


def hl7_time(value: str) -> str:
    """ISO 8601 -> HL7 TS (yyyymmddhhmmss+zzzz, or yyyymmdd for a date); "" when unreadable."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if len(value) <= 10:
        return moment.strftime("%Y%m%d")
    return moment.strftime("%Y%m%d%H%M%S%z")


def uuid_oid(value: str) -> str:
    """A UUID as an OID (ITU-T X.667: 2.25.<the UUID as an integer>)."""
    return f"2.25.{uuid.UUID(value).int}"


def oid(system: str) -> str:
    return system.removeprefix("urn:oid:")


def cda_document(letter: Letter, document_id: str) -> bytes:
    """`document_id` is a UUID; the same notification gives the same document id (idempotent)."""
    # HL7 as the default namespace (a None prefix, which lxml's stubs do not spell).
    root = etree.Element(f"{{{HL7}}}ClinicalDocument", nsmap=cast(Any, {None: HL7, "xsi": XSI}))
    _el(root, "realmCode", code="FR")
    _el(root, "typeId", root="2.16.840.1.113883.1.3", extension="POCD_HD000040")
    _el(root, "id", root=uuid_oid(document_id))
    _el(root, "code", code=DOCUMENT_CODE[0], codeSystem=LOINC, displayName=DOCUMENT_CODE[1])
    _el(root, "title", f"{letter.title} – {letter.hospital_name}")
    _el(root, "effectiveTime", value=hl7_time(letter.sent_at) or datetime.now().strftime("%Y%m%d%H%M%S"))
    _el(root, "confidentialityCode", code="N", codeSystem="2.16.840.1.113883.5.25")
    _el(root, "languageCode", code="fr-FR")
    _record_target(root, letter)
    _author(root, letter)
    custodian = _el(_el(_el(root, "custodian"), "assignedCustodian"), "representedCustodianOrganization")
    _el(custodian, "id", root=IDNST, extension=f"1{letter.hospital_finess}")
    _el(custodian, "name", letter.hospital_name)
    _encounter(root, letter)
    _body(root, letter)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _record_target(root: etree._Element, letter: Letter) -> None:
    role = _el(_el(root, "recordTarget"), "patientRole")
    if letter.ins_value:
        _el(role, "id", root=oid(letter.ins_system), extension=letter.ins_value)
    patient = _el(role, "patient")
    name = _el(patient, "name")
    _el(name, "given", letter.given)
    _el(name, "family", letter.family, qualifier="BR")
    _el(patient, "administrativeGenderCode", code=_GENDER.get(letter.gender, "U"),
        codeSystem="2.16.840.1.113883.5.1")
    if letter.birth_date:
        _el(patient, "birthTime", value=hl7_time(letter.birth_date))


def _author(root: etree._Element, letter: Letter) -> None:
    author = _el(root, "author")
    _el(author, "time", value=hl7_time(letter.sent_at))
    assigned = _el(author, "assignedAuthor")
    _el(assigned, "id", root=IDNST, extension=f"1{letter.hospital_finess}")
    if letter.referent_phone:
        _el(assigned, "telecom", value=f"tel:{letter.referent_phone}")
    if letter.referent_mail:
        _el(assigned, "telecom", value=f"mailto:{letter.referent_mail}")
    if letter.referent_name:
        person = _el(assigned, "assignedPerson")
        _el(_el(person, "name"), "family", letter.referent_name)
    organisation = _el(assigned, "representedOrganization")
    _el(organisation, "id", root=IDNST, extension=f"1{letter.hospital_finess}")
    _el(organisation, "name", letter.hospital_name)


def _encounter(root: etree._Element, letter: Letter) -> None:
    encounter = _el(_el(root, "componentOf"), "encompassingEncounter")
    if letter.stay_number:
        # The hospital's own numbering of stays, named by a UUID OID derived from its FINESS number.
        stays = uuid_oid(str(uuid.uuid5(_STAY_NAMESPACE, letter.hospital_finess)))
        _el(encounter, "id", root=stays, extension=letter.stay_number)
    period = _el(encounter, "effectiveTime")
    _el(period, "low", value=hl7_time(letter.stay_start))
    if letter.stay_end:
        _el(period, "high", value=hl7_time(letter.stay_end))


def _section(body: etree._Element, title: str, lines: list[str]) -> None:
    section = _el(_el(body, "component"), "section")
    _el(section, "title", title)
    text = _el(section, "text")
    listing = _el(text, "list")
    for line in lines or ["Aucun"]:
        _el(listing, "item", line)


def _body(root: etree._Element, letter: Letter) -> None:
    body = _el(_el(root, "component"), "structuredBody")
    stay = [f"Établissement : {letter.hospital_name} (FINESS {letter.hospital_finess})"]
    if letter.stay_start:
        stay.append(f"Du {french_date(letter.stay_start)} au {french_date(letter.stay_end) or '—'}")
    if letter.referent_name:
        contacts = ", ".join(c for c in (letter.referent_phone, letter.referent_mail) if c)
        stay.append(f"Référent hospitalier : {letter.referent_name}" + (f" ({contacts})" if contacts else ""))
    _section(body, "Séjour", stay)
    _section(body, "Suivis prévus", [
        f"{item.label} : avant le {french_date(item.due)}" if item.due else item.label for item in letter.followups
    ])
    if letter.handoff_deadline:
        _section(body, "Relai", [f"Réponse attendue avant le {french_date(letter.handoff_deadline, True)}"])
