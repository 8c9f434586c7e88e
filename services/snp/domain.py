"""SNP rules with no I/O: urgencies and deadlines, placement order, appointment statuses (the dashboard's
arithmetic is in services/snp/dashboard.py)."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from shared.communes import all_communes

PARIS = ZoneInfo("Europe/Paris")
COMMUNE_CENTRES_CSV = Path(__file__).resolve().parent / "data" / "commune_centres.csv"

# Code systems Relais uses on the SNP wire (no national code system covers these in our sources).
URGENCY_SYSTEM = "https://relais.example.org/fhir/CodeSystem/snp-urgency"
REASON_SYSTEM = "https://relais.example.org/fhir/CodeSystem/snp-reason-category"
INSEE_COMMUNE_SYSTEM = "https://relais.example.org/fhir/NamingSystem/insee-commune"
# ANS SAS IG: the slot type travels in Slot.meta.security, coded in TRE_R314 (a slot may carry several).
SLOT_TYPE_SYSTEM = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
SLOT_TYPES = ("PUBLIC", "PRO", "CPTS", "SNP")
SNP_SLOT_TYPE_CODE = "SNP"
SAS_REQUEST_SYSTEM = "https://relais.example.org/fhir/NamingSystem/sas-request"


class Urgency(StrEnum):
    WITHIN_2H = "2h"
    SAME_DAY = "same-day"
    WITHIN_48H = "48h"


URGENCY_DISPLAY = {
    Urgency.WITHIN_2H: "Within 2 hours",
    Urgency.SAME_DAY: "Same day",
    Urgency.WITHIN_48H: "Within 48 hours",
}

# Coded reason categories: the only trace of "why" Relais keeps; free text never gets past intake.
REASON_CATEGORIES: dict[str, str] = {
    "fever": "Fever",
    "respiratory": "Respiratory symptoms",
    "pain": "Pain",
    "minor-trauma": "Minor trauma",
    "skin": "Skin",
    "digestive": "Digestive symptoms",
    "urinary": "Urinary symptoms",
    "ent-eye": "ENT or eye",
    "mental-health": "Mental health",
    "prescription": "Prescription or certificate",
    "other": "Other",
}


def deadline_for(urgency: Urgency, requested_at: datetime) -> datetime:
    """When the patient must have been seen: +2 h, end of the local day (never under 2 h), +48 h."""
    if requested_at.tzinfo is None:
        raise ValueError("requested_at must be timezone-aware")
    if urgency is Urgency.WITHIN_2H:
        return requested_at + timedelta(hours=2)
    if urgency is Urgency.WITHIN_48H:
        return requested_at + timedelta(hours=48)
    local = requested_at.astimezone(PARIS)
    end_of_day = datetime.combine(local.date(), time(23, 59, 59), tzinfo=PARIS).astimezone(
        requested_at.tzinfo
    )
    # A late-evening "same day" request still gets a 2-hour window rather than minutes.
    return max(end_of_day, requested_at + timedelta(hours=2))


# --- communes and distances -------------------------------------------------------------------


@dataclass(frozen=True)
class Commune:
    """A commune as placement sees it: national table (shared.communes) plus a centre when one is known."""

    insee: str
    name: str
    postal_codes: tuple[str, ...]
    latitude: float | None = None
    longitude: float | None = None

    @property
    def postal_code(self) -> str:
        return self.postal_codes[0]


@lru_cache(maxsize=1)
def _centres() -> dict[str, tuple[float, float]]:
    with COMMUNE_CENTRES_CSV.open(encoding="utf-8") as handle:
        lines = (line for line in handle if not line.startswith("#"))
        return {row["insee"]: (float(row["latitude"]), float(row["longitude"])) for row in csv.DictReader(lines)}


@lru_cache(maxsize=1)
def communes() -> dict[str, Commune]:
    """Every French commune by INSEE code (shared/data/communes.csv), with its centre when known."""
    centres = _centres()
    table = {}
    for insee, item in all_communes().items():
        lat, lon = centres.get(insee, (None, None))
        table[insee] = Commune(insee, item.name, item.postal_codes, lat, lon)
    return table


def haversine_km(a: Commune, b: Commune) -> float:
    """Great-circle distance between two communes' centres; infinite when either centre is unknown."""
    if a.latitude is None or a.longitude is None or b.latitude is None or b.longitude is None:
        return math.inf
    earth_radius_km = 6371.0088
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * earth_radius_km * math.asin(math.sqrt(h))


# --- placement --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlotCandidate:
    slot_id: str
    org_id: str
    commune: str
    start: datetime


@dataclass(frozen=True)
class Placement:
    slot: SlotCandidate
    via: str  # "own-team" | "pool"
    distance_km: float | None = None
    load: int | None = None


def usable(slot: SlotCandidate, now: datetime, deadline: datetime) -> bool:
    return now <= slot.start <= deadline


def rank_pool(
    candidates: Iterable[SlotCandidate],
    *,
    patient_commune: str,
    loads: Mapping[str, int],
    now: datetime,
    deadline: datetime,
    table: Mapping[str, Commune] | None = None,
) -> list[Placement]:
    """Pool order: earliest start within the deadline, then distance between communes, then lightest load."""
    table = table or communes()
    origin = table.get(patient_commune)

    def distance(slot: SlotCandidate) -> float:
        target = table.get(slot.commune)
        # An unknown commune sorts last among equals rather than failing the whole placement.
        return haversine_km(origin, target) if origin and target else math.inf

    ranked = [
        Placement(slot, "pool", distance(slot), loads.get(slot.org_id, 0))
        for slot in candidates
        if usable(slot, now, deadline)
    ]
    ranked.sort(key=lambda p: (p.slot.start, p.distance_km, p.load, p.slot.org_id, p.slot.slot_id))
    return ranked


def placement_order(
    own_team: Sequence[SlotCandidate],
    pool: Iterable[SlotCandidate],
    *,
    patient_commune: str,
    loads: Mapping[str, int],
    now: datetime,
    deadline: datetime,
    table: Mapping[str, Commune] | None = None,
) -> list[Placement]:
    """Every acceptable slot, best first: the patient's own team (earliest first), then the ranked pool."""
    own = sorted((s for s in own_team if usable(s, now, deadline)), key=lambda s: (s.start, s.slot_id))
    own_ids = {s.slot_id for s in own}
    first = [Placement(s, "own-team") for s in own]
    rest = rank_pool(
        (s for s in pool if s.slot_id not in own_ids),
        patient_commune=patient_commune,
        loads=loads,
        now=now,
        deadline=deadline,
        table=table,
    )
    return first + rest


# --- the SAS platform's slot search ------------------------------------------------------------------


@dataclass(frozen=True)
class SlotSearch:
    """The SAS platform's Slot search, as criteria (each tuple: any of its values matches)."""

    start_ge: datetime | None = None
    start_le: datetime | None = None
    status: tuple[str, ...] = ()
    practitioners: tuple[str, ...] = ()  # "system|value" of a Practitioner actor
    roles: tuple[str, ...] = ()  # "system|value" of a PractitionerRole actor
    postal_codes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()  # TRE_R314 codes (_security)
    service_types: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()


# --- appointment statuses (ANS SAS IG: PENDING, BOOKED, then fulfilled, NOSHOW or CANCELLED) ----------


class AppointmentStatus(StrEnum):
    PENDING = "pending"
    BOOKED = "booked"
    FULFILLED = "fulfilled"
    NOSHOW = "noshow"
    CANCELLED = "cancelled"


TRANSITIONS: dict[AppointmentStatus, frozenset[AppointmentStatus]] = {
    AppointmentStatus.PENDING: frozenset({AppointmentStatus.BOOKED, AppointmentStatus.CANCELLED}),
    AppointmentStatus.BOOKED: frozenset(
        {AppointmentStatus.FULFILLED, AppointmentStatus.NOSHOW, AppointmentStatus.CANCELLED}
    ),
    AppointmentStatus.FULFILLED: frozenset(),
    AppointmentStatus.NOSHOW: frozenset(),
    AppointmentStatus.CANCELLED: frozenset(),
}


def parse_status(value: str) -> AppointmentStatus:
    # The SAS IG writes statuses in capitals; FHIR codes are lower case.
    normalised = value.strip().lower().replace("-", "").replace("_", "")
    return AppointmentStatus(normalised)


# Outcomes of the visit itself can only be told once the appointment time has come.
AFTER_START = frozenset({AppointmentStatus.FULFILLED, AppointmentStatus.NOSHOW})


def can_move(
    current: AppointmentStatus,
    target: AppointmentStatus,
    *,
    now: datetime | None = None,
    start: datetime | None = None,
) -> bool:
    if target not in TRANSITIONS[current]:
        return False
    return not (target in AFTER_START and now is not None and start is not None and now < start)


class RequestState(StrEnum):
    WAITING = "waiting"  # no slot yet; retried until the deadline
    PLACED = "placed"
    EXPIRED = "expired"  # deadline passed unplaced: escalated to the CPTS
