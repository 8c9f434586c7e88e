"""The kernel's mirrors (shared.mirrors): one ordering rule, and discharge and snp fed the same snapshots, out of
order and twice, end in the same state."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from services.discharge.bootstrap import bootstrap as discharge_bootstrap
from services.discharge.entrypoints.consumers import careteam_handlers as discharge_handlers
from services.snp.bootstrap import bootstrap as snp_bootstrap
from services.snp.entrypoints.consumers import careteam_handlers as snp_handlers
from services.snp.uow import SnpUnitOfWork
from shared.auth import Directory
from shared.bus.envelope import Envelope
from shared.events import TOPIC_CARETEAM
from shared.mirrors import MirrorRepository, Stamp, supersedes
from shared.settings import DischargeSettings, SnpSettings

T0, T1, T2, T3 = (f"2026-12-0{day}T08:00:00.000Z" for day in (1, 2, 3, 4))
PATIENT_A, PATIENT_B = "a" * 32, "b" * 32
REFERENT = {"rpps": "10001234565", "name": "Dr Référent", "telecom": [{"system": "phone", "value": "0329000000"}]}


# --- the ordering rule ------------------------------------------------------------------------------------


def test_the_newer_contract_time_wins_whatever_the_envelope_says():
    older_but_sent_later = Stamp(T1, "2026-12-09T00:00:00+00:00", "z")
    newer = Stamp(T2, "2026-12-02T00:00:00+00:00", "a")
    assert supersedes(newer, older_but_sent_later)
    assert not supersedes(older_but_sent_later, newer)


def test_equal_contract_times_fall_to_the_envelope_time_then_to_the_message_id():
    first = Stamp(T1, "2026-12-02T08:00:00.000001+00:00", "m-9")
    second = Stamp(T1, "2026-12-02T08:00:00.000002+00:00", "m-1")
    assert supersedes(second, first) and not supersedes(first, second)
    low, high = Stamp(T1, "2026-12-02T08:00:00+00:00", "m-1"), Stamp(T1, "2026-12-02T08:00:00+00:00", "m-2")
    assert supersedes(high, low) and not supersedes(low, high)


def test_the_same_snapshot_again_changes_nothing_and_a_missing_time_decides_nothing():
    stamp = Stamp(T1, "2026-12-02T08:00:00+00:00", "m-1")
    assert supersedes(stamp, stamp)
    # A row from before the envelope time was kept: the contract time alone decides.
    assert supersedes(Stamp(T2, None, "m-0"), Stamp(T1, None, None))
    assert not supersedes(Stamp(T0, "2026-12-09T00:00:00+00:00", "m-9"), Stamp(T1, None, None))


# --- the same snapshots, out of order and twice, to discharge and snp -------------------------------------


def _careteam(message_id: str, at: str, sent: str, patient: str, **fields: object) -> Envelope:
    data = {"patient_key": patient, "status": "active", "postal_code": "88100", "at": at, **fields}
    return Envelope(type="careteam.changed", key=patient, data=data, source="admissions", id=message_id, time=sent)


def _territory(message_id: str, at: str, sent: str, postal_code: str, cpts: str, dac: str | None = None) -> Envelope:
    data = {"postal_code": postal_code, "cpts_org_id": cpts, "dac_org_id": dac, "at": at}
    return Envelope(type="territory.changed", key=postal_code, data=data, source="admissions", id=message_id, time=sent)


SNAPSHOTS = [
    _careteam("a1", T1, "2026-12-02T08:00:00.100+00:00", PATIENT_A, careteam_id="ct-1", team_org_id="msp-1"),
    _careteam("a2", T2, "2026-12-03T08:00:00.100+00:00", PATIENT_A, careteam_id="ct-2", team_org_id="msp-2",
              referent=REFERENT),
    # Two snapshots of one transaction share their `at`: the one written second is the truth.
    _careteam("a4", T3, "2026-12-04T08:00:00.100+00:00", PATIENT_A, status="inactive", consent_opposed=True),
    _careteam("a3", T3, "2026-12-04T08:00:00.200+00:00", PATIENT_A, careteam_id="ct-3", team_org_id="msp-3",
              dac_case_open=True, dac_org_id="dac-88"),
    _careteam("b1", T1, "2026-12-02T09:00:00+00:00", PATIENT_B, careteam_id="ct-9", team_org_id="msp-9"),
    # Older registry time, although its envelope is the latest of all: it loses.
    _careteam("b0", T0, "2026-12-09T09:00:00+00:00", PATIENT_B, careteam_id="ct-0", team_org_id="msp-0"),
    _territory("t1", T1, "2026-12-02T10:00:00+00:00", "88100", "cpts-old"),
    _territory("t2", T2, "2026-12-03T10:00:00+00:00", "88100", "cpts-new", "dac-88"),
    # The same times on both sides: the message id decides.
    _territory("u-a", T1, "2026-12-02T10:00:00+00:00", "88200", "cpts-a"),
    _territory("u-b", T1, "2026-12-02T10:00:00+00:00", "88200", "cpts-b"),
]

EXPECTED = {
    PATIENT_A: ("ct-3", "msp-3", "active", None, False, True, "dac-88", "88100", T3),
    PATIENT_B: ("ct-9", "msp-9", "active", None, False, False, None, "88100", T1),
    "88100": ("cpts-new", "dac-88", T2),
    "88200": ("cpts-b", None, T1),
}


def _orders() -> Iterator[list[Envelope]]:
    yield list(SNAPSHOTS)
    yield SNAPSHOTS[::-1]
    for seed in (7, 2026):
        shuffled = list(SNAPSHOTS)
        random.Random(seed).shuffle(shuffled)
        yield shuffled


def _state(mirrors: MirrorRepository) -> dict[str, tuple]:
    state: dict[str, tuple] = {}
    for key in (PATIENT_A, PATIENT_B):
        row = mirrors.careteam(key)
        assert row is not None
        state[key] = (
            row.careteam_id,
            row.team_org_id,
            row.status,
            row.referent,
            row.consent_opposed,
            row.dac_case_open,
            row.dac_org_id,
            row.postal_code,
            row.source_time,
        )
    for postal_code in ("88100", "88200"):
        territory = mirrors.territory(postal_code)
        assert territory is not None
        state[postal_code] = (territory.cpts_org_id, territory.dac_org_id, territory.source_time)
    return state


@pytest.fixture
def directory(tmp_path):
    directory = Directory(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    yield directory
    directory.close()


def _discharge(tmp_path, directory) -> tuple[Callable[[Envelope], None], Callable[[], dict[str, tuple]], Callable]:
    settings = DischargeSettings(data_dir=tmp_path / "discharge", environment="test", secret_key="s" * 40)
    service = discharge_bootstrap(settings, directory=directory, run_workers=False)
    deliver = discharge_handlers(service.bus)[TOPIC_CARETEAM]

    def state() -> dict[str, tuple]:
        with service.unit_of_work() as uow:
            return _state(uow.mirror)

    return deliver, state, service.runtime.close


def _snp(tmp_path, directory) -> tuple[Callable[[Envelope], None], Callable[[], dict[str, tuple]], Callable]:
    service = snp_bootstrap(SnpSettings(data_dir=tmp_path / "snp"), directory=directory, run_workers=False)
    deliver = snp_handlers(service.app.state.bus)[TOPIC_CARETEAM]

    def state() -> dict[str, tuple]:
        with service.runtime.unit_of_work(SnpUnitOfWork) as uow:
            return _state(uow.mirrors)

    return deliver, state, service.runtime.close


@pytest.mark.parametrize("order", list(_orders()), ids=["in-order", "reversed", "shuffled-7", "shuffled-2026"])
def test_discharge_and_snp_end_in_the_same_state_whatever_the_order_and_repeats(tmp_path, directory, order):
    ends = {}
    for name, start in (("discharge", _discharge), ("snp", _snp)):
        deliver, state, close = start(tmp_path, directory)
        try:
            for envelope in [*order, *order[::-1]]:  # every snapshot twice, the repeats in another order
                deliver(envelope)
            ends[name] = state()
        finally:
            close()
    assert ends["discharge"] == ends["snp"] == EXPECTED


def test_a_late_territory_snapshot_no_longer_overwrites_a_newer_one_in_discharge(tmp_path, directory):
    deliver, state, close = _discharge(tmp_path, directory)
    try:
        newer, older = SNAPSHOTS[7], SNAPSHOTS[6]
        for envelope in (*SNAPSHOTS[:6], SNAPSHOTS[8], SNAPSHOTS[9], newer, older):
            deliver(envelope)
        assert state()["88100"] == ("cpts-new", "dac-88", T2)
    finally:
        close()


def test_discharge_orders_care_teams_by_the_registry_time_not_the_envelope_time(tmp_path, directory):
    deliver, state, close = _discharge(tmp_path, directory)
    try:
        for envelope in SNAPSHOTS:
            deliver(envelope)
        # b0's envelope is the latest of all, its registry time the oldest: b1 stays.
        assert state()[PATIENT_B] == EXPECTED[PATIENT_B]
    finally:
        close()
