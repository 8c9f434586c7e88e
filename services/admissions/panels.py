"""A team's patient list (panel) from a FHIR Group or a CSV, into `UpdatePanel` lines; and the per-line report.

Pure (no I/O). A Group follows the Da Vinci Member Attribution shape: type `person`, `actual` true, one `member` per
patient whose `entity.identifier` is the INS (INS-NIR or its test OID); `entity.reference` may point to a contained
Patient whose address gives the postal code. A CSV has one patient a line: NIR, family name, given name, birth date
(YYYY-MM-DD or DD/MM/YYYY), postal code; comma- or semicolon-separated, UTF-8 or ISO-8859-1, an optional header.
Reasons never quote what a line holds.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.admissions.commands import PanelLine
from services.admissions.intake import validated
from shared.errors import BadRequest, PayloadTooLarge, RelaisError, Unprocessable
from shared.fhir.encounter import PatientIdentity, patient_identity
from shared.fhir.models import Group, Identifier, Parameters
from shared.fhir.outcome import issue, outcome_from_issues
from shared.identifiers import INS_NIR, INS_SYSTEMS

GROUP_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_CSV_LINE = 512
MAX_NAME = 100
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula
OUTCOME_SYSTEM = "https://relais.example.org/fhir/CodeSystem/panel-line-outcome"


class Outcome:
    ENROLLED = "enrolled"
    ALREADY_YOURS = "already-yours"
    CHANGE_REQUESTED = "change-requested"
    REFUSED = "refused"
    REMOVED = "removed"
    NOT_LISTED = "not-listed"
    LEFT = "left"  # replaced: on the group before, not in the new list


@dataclass(frozen=True)
class LineReport:
    position: str
    outcome: str
    reason: str | None = None


def checked_group_id(group_id: str) -> str:
    if not GROUP_ID.fullmatch(group_id):
        raise BadRequest("a Group id is 1 to 64 letters, digits, '-' or '.'", expression=["Group.id"])
    return group_id


def _too_many(count: int, maximum: int, what: str) -> None:
    if count > maximum:
        raise PayloadTooLarge(
            f"{count} {what} in one request; at most {maximum} (RELAIS_ADMISSIONS_PANEL_MAX_MEMBERS): send the list "
            "in several requests ($add)"
        )


def _identity(identifier: Any, where: str) -> PatientIdentity:
    if identifier is None or identifier.system not in INS_SYSTEMS:
        raise Unprocessable(f"{where} needs the patient's INS (INS-NIR identifier)")
    return patient_identity([identifier], where)


def _contained_postal_code(group: Group, reference: str | None) -> str | None:
    if not reference or not reference.startswith("#"):
        return None
    for resource in group.contained or []:
        if resource.get_resource_type() == "Patient" and resource.id == reference[1:]:
            for address in getattr(resource, "address", None) or []:
                if address.postalCode and re.fullmatch(r"\d{5}", address.postalCode):
                    return str(address.postalCode)
    return None


def _group_line(group: Group, index: int, member: Any) -> PanelLine:
    where = f"Group.member[{index}]"
    entity = member.entity
    try:
        identity = _identity(entity.identifier, f"{where}.entity.identifier")
    except RelaisError as exc:
        return PanelLine(where, refused=exc.diagnostics)
    return PanelLine(where, identity, _contained_postal_code(group, entity.reference))


def group_lines(data: dict[str, Any], max_members: int) -> tuple[PanelLine, ...]:
    """The Group's active members as lines; 413 beyond `max_members`, 422 for a Group that is not a patient list."""
    members = data.get("member")
    _too_many(len(members) if isinstance(members, list) else 0, max_members, "members")
    group = validated(Group, data)
    if group.type != "person" or group.actual is not True:
        raise Unprocessable("a patient list is a Group of type 'person' with actual true", expression=["Group.type"])
    # An inactive member (Da Vinci Member Attribution) is not on the list.
    return tuple(_group_line(group, i, m) for i, m in enumerate(group.member or []) if not m.inactive)


def parameters_lines(data: dict[str, Any], max_members: int) -> tuple[PanelLine, ...]:
    """$add / $remove with a Parameters of `memberId` (valueIdentifier: the INS), as Da Vinci's operations name it."""
    parameters = data.get("parameter")
    _too_many(len(parameters) if isinstance(parameters, list) else 0, max_members, "parameters")
    params = validated(Parameters, data)
    lines = []
    for index, part in enumerate(params.parameter or []):
        where = f"Parameters.parameter[{index}]"
        if part.name != "memberId":
            lines.append(PanelLine(where, refused="only 'memberId' parameters (valueIdentifier: the INS) are read"))
            continue
        try:
            lines.append(PanelLine(where, _identity(part.valueIdentifier, f"{where}.valueIdentifier")))
        except RelaisError as exc:
            lines.append(PanelLine(where, refused=exc.diagnostics))
    return tuple(lines)


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("iso-8859-1")  # a spreadsheet's export on a French desktop


def _birth_date(text: str) -> date:
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise ValueError("birth date is not YYYY-MM-DD or DD/MM/YYYY")


def _name(text: str, label: str) -> str:
    if not text:
        raise ValueError(f"{label} is empty")
    if text.startswith(FORMULA_START):
        raise ValueError(f"{label} starts like a spreadsheet formula (=, +, -, @)")
    if len(text) > MAX_NAME or any(not c.isprintable() for c in text):
        raise ValueError(f"{label} must be at most {MAX_NAME} printable characters")
    return text


def _csv_line(number: int, cells: list[str]) -> PanelLine:
    where = f"line {number}"
    if len(cells) < 5:
        return PanelLine(where, refused=f"{len(cells)} columns; a line has NIR, family name, given name, birth date, "
                                        "postal code")  # fmt: skip
    nir, family, given, born, postal = (cell.strip() for cell in cells[:5])
    try:
        _name(family, "family name")
        _name(given, "given name")
        birth = _birth_date(born)
        if postal and not re.fullmatch(r"\d{5}", postal):
            raise ValueError("postal code is not 5 digits")
        identity = patient_identity([Identifier(system=INS_NIR, value=nir or "-")], "NIR")
    except ValueError as exc:
        return PanelLine(where, refused=str(exc))
    except RelaisError:
        return PanelLine(where, refused="NIR is not valid (15 characters whose last two are the key of the first 13)")
    nir_month = identity.value[3:5]
    if identity.value[1:3] != f"{birth.year % 100:02d}" or (
        "01" <= nir_month <= "12" and int(nir_month) != birth.month
    ):
        return PanelLine(where, refused="birth date does not match the NIR")
    return PanelLine(where, identity, postal or None)


def csv_lines(body: bytes, max_members: int) -> tuple[PanelLine, ...]:
    """One line per patient; an optional first header line; over-long lines refused without being parsed."""
    rows = _decode(body).splitlines()
    if rows and rows[0].strip() and not rows[0].strip().lstrip("\"'")[:1].isdigit():
        rows[0] = ""  # a header line
    numbered = [(number, row) for number, row in enumerate(rows, start=1) if row.strip()]
    _too_many(len(numbered), max_members, "lines")
    if not numbered:
        raise Unprocessable("the CSV has no patient line", expression=["line 1"])
    separator = ";" if rows and max(rows, key=len).count(";") > max(rows, key=len).count(",") else ","
    lines = []
    for number, row in numbered:
        if len(row) > MAX_CSV_LINE:
            lines.append(PanelLine(f"line {number}", refused=f"longer than {MAX_CSV_LINE} characters"))
            continue
        lines.append(_csv_line(number, next(csv.reader([row], delimiter=separator))))
    return tuple(lines)


def _line_issue(report: LineReport) -> dict[str, Any]:
    refused = report.outcome == Outcome.REFUSED
    found = issue(
        "error" if refused else "information",
        "processing" if refused else "informational",
        report.reason or report.outcome,
        expression=[report.position],
    )
    found["details"] = {"coding": [{"system": OUTCOME_SYSTEM, "code": report.outcome}]}
    return found


def report_outcome(reports: list[LineReport]) -> dict[str, Any]:
    """An OperationOutcome: a summary, then one issue per line (refusals as errors), in the order sent.

    Validating 10,000 issues with the FHIR models takes seconds: the summary and one issue of each kind are
    validated (they share one shape, built here), and the others are those same dicts.
    """
    counts = Counter(report.outcome for report in reports)
    summary = ", ".join(f"{outcome} {count}" for outcome, count in sorted(counts.items()))
    issues = [issue("information", "informational", f"{len(reports)} line(s): {summary or 'none'}")]
    issues += [_line_issue(report) for report in reports]
    samples = {(item["severity"], item["details"]["coding"][0]["code"]): item for item in issues[1:]}
    checked = outcome_from_issues([issues[0], *samples.values()])
    return {**checked, "issue": issues}
