"""SNP rules with no I/O: urgencies and deadlines, placement order, appointment statuses, dashboard math."""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
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


# --- dashboard math ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """One SNP request as the dashboard sees it: organisational and minimised fields only."""

    urgency: str
    commune: str
    requested_at: datetime
    deadline_at: datetime
    state: str
    appointment_start: datetime | None = None
    appointment_status: str | None = None
    effecteur_org_id: str | None = None

    @property
    def placed(self) -> bool:
        return self.appointment_start is not None

    @property
    def within_deadline(self) -> bool:
        return self.appointment_start is not None and self.appointment_start <= self.deadline_at

    @property
    def minutes_to_appointment(self) -> float | None:
        if self.appointment_start is None:
            return None
        return (self.appointment_start - self.requested_at).total_seconds() / 60


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _group(facts: Sequence[Fact], key) -> list[dict]:
    groups: dict[str, list[Fact]] = defaultdict(list)
    for fact in facts:
        groups[key(fact)].append(fact)
    rows = []
    for name in sorted(groups):
        items = groups[name]
        within = sum(f.within_deadline for f in items)
        rows.append(
            {
                "key": name,
                "requests": len(items),
                "placed": sum(f.placed for f in items),
                "placed_within_deadline": within,
                "share_placed_within_deadline": _share(within, len(items)),
                "noshows": sum(f.appointment_status == AppointmentStatus.NOSHOW for f in items),
                "unplaced": sum(not f.placed for f in items),
            }
        )
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# A breakdown cell counting fewer requests than this could single a person out (RELAIS_SMALL_CELL_THRESHOLD).
SMALL_CELL_THRESHOLD = 5
_CELL_LABELS = frozenset({"key", "name", "hour"})


def suppress_small_cells(rows: list[dict], threshold: int, count: str = "requests") -> list[dict]:
    """Blank every count of a cell with 0 < requests < threshold, marking it ``suppressed``.

    Secondary suppression: while the suppressed cells add up to less than the threshold (so the total minus the
    visible cells would give them away), the smallest visible non-empty cell is suppressed as well.
    """
    small = {i for i, row in enumerate(rows) if 0 < row[count] < threshold}
    hidden = sum(rows[i][count] for i in small)
    visible = sorted((i for i, row in enumerate(rows) if row[count] >= threshold), key=lambda i: rows[i][count])
    while 0 < hidden < threshold and visible:
        i = visible.pop(0)
        small.add(i)
        hidden += rows[i][count]
    shaped = []
    for i, row in enumerate(rows):
        if i in small:
            shaped.append({k: (v if k in _CELL_LABELS else None) for k, v in row.items()} | {"suppressed": True})
        else:
            shaped.append(dict(row))
    return shaped


def dashboard(
    facts: Sequence[Fact],
    commune_names: Mapping[str, str] | None = None,
    *,
    small_cell_threshold: int = SMALL_CELL_THRESHOLD,
) -> dict:
    """Aggregates over the requests of one territory and period; breakdown cells under the threshold are
    suppressed (see suppress_small_cells)."""
    names = commune_names or {}
    minutes = [m for f in facts if (m := f.minutes_to_appointment) is not None]
    within = sum(f.within_deadline for f in facts)
    hours = Counter(f.requested_at.astimezone(PARIS).hour for f in facts)
    by_effecteur = _group([f for f in facts if f.effecteur_org_id], lambda f: f.effecteur_org_id)
    by_commune = _group(facts, lambda f: f.commune)
    for row in by_commune:
        row["name"] = names.get(row["key"], row["key"])
    return {
        "requests": len(facts),
        "placed": sum(f.placed for f in facts),
        "placed_within_deadline": within,
        "share_placed_within_deadline": _share(within, len(facts)),
        "time_to_appointment_minutes": {
            "count": len(minutes),
            "median": _round(percentile(minutes, 0.5)),
            "p90": _round(percentile(minutes, 0.9)),
        },
        "noshows": sum(f.appointment_status == AppointmentStatus.NOSHOW for f in facts),
        "unplaced": sum(not f.placed for f in facts),
        "expired": sum(f.state == RequestState.EXPIRED for f in facts),
        "waiting": sum(f.state == RequestState.WAITING for f in facts),
        "small_cell_threshold": small_cell_threshold,
        "by_urgency": suppress_small_cells(_group(facts, lambda f: f.urgency), small_cell_threshold),
        "by_commune": suppress_small_cells(by_commune, small_cell_threshold),
        "by_effecteur": suppress_small_cells(by_effecteur, small_cell_threshold),
        "by_hour": suppress_small_cells(
            [{"hour": h, "requests": hours.get(h, 0)} for h in range(24)], small_cell_threshold
        ),
    }
