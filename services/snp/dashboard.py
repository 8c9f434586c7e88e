"""The CPTS dashboard's arithmetic: aggregates over whole Paris days with small cells suppressed.

The rule (docs/privacy.md, "Dashboard periods"): a period is a run of whole, completed days. Each day is
suppressed on its own first: a cell of 1 to threshold-1 requests that day is hidden, and so is the smallest
visible cell of that day while the hidden ones add up to less than the threshold; a day of 1 to threshold-1
requests hides the totals. A period then shows a cell only if no day of it hid that cell, and its totals only
if no day of it hid the totals. So every number of every period is a sum of numbers that the one-day answers of
its days show, and each day shows nothing smaller than the threshold and hides nothing smaller either:
differencing periods, overlapping or nested, learns sums of shown one-day numbers, never fewer than the
threshold. Hidden cells leave their rows without a label, gathered into one row at the end.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from services.snp.domain import PARIS, AppointmentStatus, RequestState

# A cell counting fewer requests than this could single a person out (RELAIS_SMALL_CELL_THRESHOLD).
SMALL_CELL_THRESHOLD = 5


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

    @property
    def local_time(self) -> datetime:
        # SQLite hands back naive datetimes for timezone-aware columns: they are UTC.
        moment = self.requested_at if self.requested_at.tzinfo else self.requested_at.replace(tzinfo=UTC)
        return moment.astimezone(PARIS)

    @property
    def day(self) -> date:
        return self.local_time.date()


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


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def hidden_keys(counts: Mapping[Any, int], threshold: int) -> set[Any]:
    """The cells one day hides: 0 < n < threshold, then the smallest visible ones while the hidden add up to less
    than the threshold (else the day's total minus the visible cells would give them away)."""
    hidden = {key for key, n in counts.items() if 0 < n < threshold}
    total = sum(counts[key] for key in hidden)
    visible = sorted((key for key, n in counts.items() if n >= threshold), key=lambda key: (counts[key], str(key)))
    while 0 < total < threshold and visible:
        key = visible.pop(0)
        hidden.add(key)
        total += counts[key]
    return hidden


def _measures(items: Sequence[Fact]) -> dict[str, Any]:
    within = sum(f.within_deadline for f in items)
    return {
        "requests": len(items),
        "placed": sum(f.placed for f in items),
        "placed_within_deadline": within,
        "share_placed_within_deadline": _share(within, len(items)),
        "noshows": sum(f.appointment_status == AppointmentStatus.NOSHOW for f in items),
        "unplaced": sum(not f.placed for f in items),
    }


def _count(items: Sequence[Fact]) -> dict[str, Any]:
    return {"requests": len(items)}


def breakdown(
    facts: Sequence[Fact], key: Callable[[Fact], Any], threshold: int, label: str = "key",
    names: Mapping[str, str] | None = None, measures: Callable[[Sequence[Fact]], dict[str, Any]] = _measures,
) -> list[dict[str, Any]]:
    """Rows of the cells no day hid (sorted by key), then one unlabelled row standing for every hidden cell."""
    per_day: dict[date, dict[Any, int]] = defaultdict(lambda: defaultdict(int))
    groups: dict[Any, list[Fact]] = defaultdict(list)
    for fact in facts:
        per_day[fact.day][key(fact)] += 1
        groups[key(fact)].append(fact)
    hidden: set[Any] = set()
    for counts in per_day.values():
        hidden |= hidden_keys(counts, threshold)
    rows = []
    for cell in sorted(set(groups) - hidden):
        row: dict[str, Any] = {label: cell}
        if names is not None:
            row["name"] = names.get(cell, cell)
        rows.append(row | measures(groups[cell]))
    if hidden:
        labels = [label, "name"] if names is not None else [label]
        rows.append(dict.fromkeys([*labels, *measures([])]) | {"suppressed": True})
    return rows


def _totals(facts: Sequence[Fact]) -> dict[str, Any]:
    minutes = [m for f in facts if (m := f.minutes_to_appointment) is not None]
    return _measures(facts) | {
        "time_to_appointment_minutes": {
            "count": len(minutes),
            "median": _round(percentile(minutes, 0.5)),
            "p90": _round(percentile(minutes, 0.9)),
        },
        "expired": sum(f.state == RequestState.EXPIRED for f in facts),
        "waiting": sum(f.state == RequestState.WAITING for f in facts),
    }


def dashboard(
    facts: Sequence[Fact],
    commune_names: Mapping[str, str] | None = None,
    *,
    small_cell_threshold: int = SMALL_CELL_THRESHOLD,
) -> dict[str, Any]:
    """Aggregates over the requests of one territory and a run of whole days (see the module's rule)."""
    threshold = small_cell_threshold
    per_day: dict[date, int] = defaultdict(int)
    for fact in facts:
        per_day[fact.day] += 1
    totals = _totals(facts)
    if any(0 < n < threshold for n in per_day.values()):
        totals = dict.fromkeys(totals) | {"suppressed": True}
    return totals | {
        "small_cell_threshold": threshold,
        "by_urgency": breakdown(facts, lambda f: f.urgency, threshold),
        "by_commune": breakdown(facts, lambda f: f.commune, threshold, names=commune_names or {}),
        "by_effecteur": breakdown([f for f in facts if f.effecteur_org_id], lambda f: f.effecteur_org_id, threshold),
        "by_hour": breakdown(facts, lambda f: f.local_time.hour, threshold, label="hour", measures=_count),
    }
