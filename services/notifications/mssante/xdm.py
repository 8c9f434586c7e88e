"""The IHE XDM zip a practice software files in the patient's record (ITI TF-1 §16, ITI TF-3 §4.2.3):

    INDEX.HTM, README.TXT
    IHE_XDM/SUBSET01/METADATA.XML   an ebRIM SubmitObjectsRequest: the submission set and one document entry per file,
                                    the patient named by INS (sourcePatientId and the patientId identifiers)
    IHE_XDM/SUBSET01/DOC0001.XML    the CDA R2 letter
    IHE_XDM/SUBSET01/DOC0002.PDF    the same letter as a PDF
"""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from services.notifications.mssante.cda import hl7_time, oid, uuid_oid
from services.notifications.mssante.letter import Letter

ZIP_NAME = "IHE_XDM.zip"
SUBSET = "IHE_XDM/SUBSET01"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
# ITI TF-3 Table 4.2.5-1 (XDS object and attribute UUIDs).
DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
DE_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
_NAMESPACE = uuid.UUID("0d7c9a3e-4b8e-4f7a-9c61-1f2e3d4c5b6a")


@dataclass(frozen=True)
class XdmFile:
    name: str
    mime: str
    format_code: str
    content: bytes


def derived_id(letter: Letter, what: str) -> str:
    """Ids derived from the notification: a retried mail carries the very same documents."""
    return str(uuid.uuid5(_NAMESPACE, f"{letter.notification_id}|{what}"))


def patient_cx(letter: Letter) -> str:
    """The patient as an HL7 v2 CX, as XDS metadata names patients: NIR^^^&OID&ISO^NH."""
    return f"{letter.ins_value}^^^&{oid(letter.ins_system)}&ISO^NH" if letter.ins_value else ""


def _rim(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{RIM}}}{tag}", attrs)


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    listing = _rim(_rim(parent, "Slot", name=name), "ValueList")
    for value in values:
        _rim(listing, "Value").text = value


def _name(parent: etree._Element, text: str) -> None:
    _rim(_rim(parent, "Name"), "LocalizedString", value=text)


def _child_id(parent: etree._Element, what: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, parent.get('id', '') + '|' + what)}"


def _classification(parent: etree._Element, scheme: str, code: str, system: str, display: str) -> None:
    node = _rim(parent, "Classification", classificationScheme=scheme, classifiedObject=parent.get("id", ""),
                nodeRepresentation=code, id=_child_id(parent, scheme))
    _slot(node, "codingScheme", system)
    _name(node, display)


def _identifier(parent: etree._Element, scheme: str, value: str, name: str) -> None:
    node = _rim(parent, "ExternalIdentifier", identificationScheme=scheme, value=value,
                registryObject=parent.get("id", ""), id=_child_id(parent, scheme))
    _name(node, name)


def _document_entry(objects: etree._Element, letter: Letter, file: XdmFile, index: int) -> str:
    entry_id = f"urn:uuid:{derived_id(letter, file.name)}"
    entry = _rim(objects, "ExtrinsicObject", id=entry_id, mimeType=file.mime, objectType=DOCUMENT_ENTRY)
    _slot(entry, "creationTime", hl7_time(letter.sent_at)[:14] or datetime.now().strftime("%Y%m%d%H%M%S"))
    _slot(entry, "languageCode", "fr-FR")
    _slot(entry, "hash", hashlib.sha1(file.content, usedforsecurity=False).hexdigest())
    _slot(entry, "size", str(len(file.content)))
    _slot(entry, "URI", file.name.rsplit("/", 1)[-1])
    if letter.ins_value:
        _slot(entry, "sourcePatientId", patient_cx(letter))
        _slot(entry, "sourcePatientInfo", f"PID-3|{patient_cx(letter)}",
              f"PID-5|{letter.family}^{letter.given}^^^^^L", f"PID-7|{hl7_time(letter.birth_date)}",
              f"PID-8|{ {'female': 'F', 'male': 'M'}.get(letter.gender, 'U') }")
    _name(entry, f"{letter.title} ({'CDA' if index == 1 else 'PDF'})")
    _classification(entry, DE_CLASS_CODE, "11", "1.2.250.1.213.1.1.4.1", "Synthèse")
    _classification(entry, DE_TYPE_CODE, "34133-9", "2.16.840.1.113883.6.1", "Summary of episode note")
    _classification(entry, DE_FORMAT_CODE, file.format_code, "1.3.6.1.4.1.19376.1.2.3", file.format_code)
    if letter.ins_value:
        _identifier(entry, DE_PATIENT_ID, patient_cx(letter), "XDSDocumentEntry.patientId")
    _identifier(entry, DE_UNIQUE_ID, uuid_oid(derived_id(letter, file.name)), "XDSDocumentEntry.uniqueId")
    return entry_id


def metadata(letter: Letter, files: list[XdmFile], recipient: str) -> bytes:
    root = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = _rim(root, "RegistryObjectList")
    package_id = f"urn:uuid:{derived_id(letter, 'submission-set')}"
    entries = [_document_entry(objects, letter, file, i) for i, file in enumerate(files, start=1)]
    package = _rim(objects, "RegistryPackage", id=package_id)
    _slot(package, "submissionTime", hl7_time(letter.sent_at)[:14] or datetime.now().strftime("%Y%m%d%H%M%S"))
    _slot(package, "intendedRecipient", f"|{recipient}^^^^^^^^^^^^")
    _name(package, letter.title)
    _rim(package, "Classification", classifiedObject=package_id, classificationNode=SUBMISSION_SET,
         id=_child_id(package, SUBMISSION_SET))
    if letter.ins_value:
        _identifier(package, SS_PATIENT_ID, patient_cx(letter), "XDSSubmissionSet.patientId")
    _identifier(package, SS_UNIQUE_ID, uuid_oid(derived_id(letter, "submission-set")), "XDSSubmissionSet.uniqueId")
    _identifier(package, SS_SOURCE_ID, "1.2.250.1.213.1.4.8", "XDSSubmissionSet.sourceId")
    for entry_id in entries:
        _rim(objects, "Association", associationType=HAS_MEMBER, sourceObject=package_id, targetObject=entry_id,
             id=_child_id(package, entry_id))
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


def _index(letter: Letter, files: list[XdmFile]) -> bytes:
    html = etree.Element("html")
    head = etree.SubElement(html, "head")
    etree.SubElement(head, "meta", charset="utf-8")
    etree.SubElement(head, "title").text = letter.title
    body = etree.SubElement(html, "body")
    etree.SubElement(body, "h1").text = f"{letter.title} - {letter.hospital_name}"
    listing = etree.SubElement(body, "ul")
    for file in files:
        link = etree.SubElement(etree.SubElement(listing, "li"), "a", href=file.name)
        link.text = file.name
    return bytes(etree.tostring(html, method="html", encoding="UTF-8", doctype="<!DOCTYPE html>"))


def _readme(letter: Letter) -> bytes:
    return (
        "Relais - coordination ville-hôpital\r\n"
        f"Contenu : {letter.title}, transmis pour le compte de {letter.hospital_name} "
        f"(FINESS {letter.hospital_finess}).\r\n"
        f"Format : IHE XDM ({SUBSET} : METADATA.XML, document CDA R2 et PDF).\r\n"
        f"Référence Relais : {letter.notification_id}\r\n"
    ).encode()


def xdm_zip(letter: Letter, cda: bytes, pdf: bytes, recipient: str) -> bytes:
    files = [
        XdmFile(f"{SUBSET}/DOC0001.XML", "text/xml", "urn:ihe:iti:xds-sd:text:2008", cda),
        XdmFile(f"{SUBSET}/DOC0002.PDF", "application/pdf", "urn:ihe:iti:xds-sd:pdf:2008", pdf),
    ]
    buffer = io.BytesIO()
    # A fixed date in every entry: the archive depends on the letter only, not on when it was built.
    stamp = (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in (
            ("INDEX.HTM", _index(letter, files)),
            ("README.TXT", _readme(letter)),
            (f"{SUBSET}/METADATA.XML", metadata(letter, files, recipient)),
            *((file.name, file.content) for file in files),
        ):
            archive.writestr(zipfile.ZipInfo(name, stamp), content, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
