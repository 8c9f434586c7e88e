"""What may leave the care team (CPTS): payloads built by whitelisting, never by deleting fields."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from shared.communes import communes_for_postal_code
from shared.events import EventType
from shared.routing import Detail, Recipient

MINIMISED_FIELDS: frozenset[str] = frozenset(
    {"event", "patient_key", "commune", "age_band", "occurred_at", "recorded_at"}
)
# Organisational detail (pool counts) drops everything that could link back to one patient.
ORGANISATIONAL_FIELDS: frozenset[str] = frozenset({"event", "commune", "occurred_at", "recorded_at"})

# Lower bound of each band, highest first; bands are wide enough not to single out anyone.
_BANDS: tuple[tuple[int, str], ...] = (
    (85, "85+"),
    (75, "75-84"),
    (60, "60-74"),
    (40, "40-59"),
    (18, "18-39"),
    (0, "0-17"),
)
AGE_BANDS: frozenset[str] = frozenset(label for _, label in _BANDS)

# Past these limits a string is more likely a note or a label than a code, name of a commune or a key.
MAX_VALUE_LENGTH = 64
MAX_VALUE_WORDS = 4
# An INSEE commune code: 5 digits, or 2A/2B and 3 digits in Corsica; nothing else is a commune here.
_INSEE_CODE = re.compile(r"^(\d{5}|2[AB]\d{3})$")
_NIR_LIKE = re.compile(r"^[12]\s?\d{2}\s?(\d{2}|2[AB])\s?\d{2}\s?\d{3}\s?\d{3}(\s?\d{2})?$", re.IGNORECASE)


# Relais' follow-up value set: the only follow-up codes that leave the care team; any other becomes the generic one.
FOLLOWUP_SYSTEM = "https://relais.example.org/fhir/CodeSystem/followup-activity"
GENERIC_FOLLOWUP = "followup"
FOLLOWUP_CODES: frozenset[str] = frozenset({GENERIC_FOLLOWUP, "gp-visit", "nurse-visit", "specialist-visit"})
SNOMED_CT = "http://snomed.info/sct"
# Published codes the value set maps onto its own: SNOMED CT concepts of FHIR's ValueSet procedure-followup that
# a nurse does at home (change of dressing, removal of suture, of drain, of ligature).
FOLLOWUP_MAPS: dict[str, dict[str, str]] = {
    SNOMED_CT: {"18949003": "nurse-visit", "30549001": "nurse-visit", "241031001": "nurse-visit",
                "225164002": "nurse-visit"},
}


def followup_code(system: str | None, code: str | None) -> str:
    """A hospital's follow-up coding as Relais' code: its own value set, a mapped published code, else generic.
    The hospital's own codes (which may be wording, even a name) never leave under Relais' system."""
    if code and system == FOLLOWUP_SYSTEM and code in FOLLOWUP_CODES:
        return code
    return FOLLOWUP_MAPS.get(system or "", {}).get(code or "", GENERIC_FOLLOWUP)


class NotMinimised(ValueError):
    """A payload meant for outside the care team carries more than the whitelist allows."""


def age_band(birth_date: date, on: date) -> str:
    if birth_date > on:
        raise ValueError("the birth date is after the event date")  # never the date itself: it is patient data
    age = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    return next(label for lower, label in _BANDS if age >= lower)


def _folded(name: str) -> str:
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", plain).split())


def commune_code(postal_code: str | None, city: str | None = None) -> str | None:
    """The INSEE code of the patient's commune, from the reference list by postal code; None if unknown.

    Several communes may share a postal code: the one whose name is the address's city (accents, case and
    punctuation aside) is taken, else the lowest INSEE code of them. The city text itself never leaves.
    """
    if not postal_code:
        return None
    candidates = sorted(communes_for_postal_code(postal_code), key=lambda c: c.insee)
    if not candidates:
        return None
    wanted = _folded(city) if city else None
    chosen = next((c for c in candidates if wanted and _folded(c.name) == wanted), candidates[0])
    return chosen.insee if _INSEE_CODE.match(chosen.insee) else None


def is_commune_code(value: str | None) -> bool:
    return value is not None and bool(_INSEE_CODE.match(value))


def _timestamp(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def minimise(
    payload: Mapping[str, Any],
    *,
    event_type: EventType | str,
    patient_key: str,
    commune: str | None,
    birth_date: date | None,
    occurred_at: datetime | str,
    recorded_at: datetime | str,
) -> dict[str, str | None]:
    """The minimised view of an event. `payload` is deliberately never read: nothing is copied from it."""
    del payload  # accepted so call sites hand over what they have, yet no field of it can leak
    occurred = _timestamp(occurred_at)
    on = occurred_at.date() if isinstance(occurred_at, datetime) else date.fromisoformat(occurred[:10])
    minimal: dict[str, str | None] = {
        "event": EventType(event_type).value,
        "patient_key": patient_key,
        # Only a commune code leaves; anything else (a hospital's free text, a postal code) is dropped.
        "commune": commune if is_commune_code(commune) else None,
        "age_band": age_band(birth_date, on) if birth_date is not None else None,
        "occurred_at": occurred,
        "recorded_at": _timestamp(recorded_at),
    }
    assert_minimised(minimal)
    return minimal


def organisational(minimal: Mapping[str, Any]) -> dict[str, Any]:
    # Projection of the minimised view: no patient key, no age band.
    shaped = {k: minimal[k] for k in ORGANISATIONAL_FIELDS if k in minimal}
    assert_minimised(shaped, allowed=ORGANISATIONAL_FIELDS)
    return shaped


def shape_for(
    recipient: Recipient | Detail, full: Mapping[str, Any], minimal: Mapping[str, Any]
) -> dict[str, Any]:
    """The payload a recipient may receive, chosen by its detail level."""
    detail = recipient.detail if isinstance(recipient, Recipient) else recipient
    if detail is Detail.FULL:
        return dict(full)
    if detail is Detail.MINIMISED:
        assert_minimised(minimal)
        return dict(minimal)
    return organisational(minimal)


def _looks_like_free_text(value: str) -> bool:
    return "\n" in value or len(value) > MAX_VALUE_LENGTH or len(value.split()) > MAX_VALUE_WORDS


def assert_minimised(payload: Mapping[str, Any], *, allowed: frozenset[str] = MINIMISED_FIELDS) -> None:
    """Raise NotMinimised unless every key is whitelisted and every value is short and flat."""
    extra = set(payload) - allowed
    if extra:
        raise NotMinimised(f"fields not allowed outside the care team: {sorted(extra)}")
    for key, value in payload.items():
        if value is None:
            continue
        # Nested structures or numbers could smuggle clinical data past the string checks.
        if not isinstance(value, str):
            raise NotMinimised(f"{key} must be a string, got {type(value).__name__}")
        if _looks_like_free_text(value):
            raise NotMinimised(f"{key} looks like free text")
    if payload.get("event") is not None and payload["event"] not in {e.value for e in EventType}:
        raise NotMinimised(f"unknown event {payload['event']!r}")
    if payload.get("commune") is not None and not is_commune_code(payload["commune"]):
        raise NotMinimised("commune is not an INSEE commune code")
    if payload.get("age_band") is not None and payload["age_band"] not in AGE_BANDS:
        raise NotMinimised(f"age_band {payload['age_band']!r} is not a band")
    patient_key: str | None = payload.get("patient_key")
    # A pseudonym is one opaque token; an NIR or a "Firstname Lastname" is not.
    if patient_key is not None and (_NIR_LIKE.match(patient_key) or any(ch.isspace() for ch in patient_key)):
        raise NotMinimised("patient_key does not look like a pseudonym")
