"""Durable deadlines with a fake clock: handoff expiry and missed follow-ups fire once, escalate by level."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from services.discharge.adapters.orm import TimerRow
from services.discharge.bootstrap import bootstrap
from services.discharge.entrypoints.timers import TimerWorker
from tests import factories as f
from tests.unit import test_discharge_handlers as handlers_suite
from tests.unit.test_discharge_handlers import CPTS, DAC, DISCHARGED_AT, FINESS, TEAM, task_ids

harness = handlers_suite.harness  # the same SQLite service fixture

PLAN = (("gp-visit", "Consultation du médecin traitant sous 7 jours", 7 * 24.0),)


def _discharge(harness, **kwargs) -> dict[str, list[str]]:
    harness.territory()
    harness.careteam()
    response = harness.post_message(f.full_discharge_message(plan=PLAN, **kwargs))
    assert response.status_code == 200, response.text
    return task_ids(response.json())


def test_nothing_fires_before_its_time(harness):
    _discharge(harness)
    harness.clock.advance(hours=47)
    assert harness.fire() == 0
    assert harness.notifications("handoff.expired") == []


def test_an_unanswered_handoff_expires_once_and_asks_the_cpts(harness):
    tasks = _discharge(harness)
    harness.clock.advance(hours=48, seconds=1)
    assert harness.fire() == 1
    assert harness.fire() == 0
    assert harness.recipients("handoff.expired") == {
        (TEAM, "team", "full"),
        (FINESS, "hospital", "full"),
        (CPTS, "cpts", "minimised"),
    }
    assert len(harness.notifications("handoff.expired")) == 3
    read = harness.client.get(f"/discharge/fhir/Task/{tasks['handoff'][0]}", headers=harness.auth(FINESS))
    assert read.json()["status"] == "failed" and read.json()["businessStatus"]["text"] == "expired"


def test_an_accepted_handoff_never_expires(harness):
    tasks = _discharge(harness)
    harness.client.post(f"/discharge/fhir/Task/{tasks['handoff'][0]}/$accept", headers=harness.auth(TEAM))
    harness.clock.advance(days=3)
    harness.fire()
    assert harness.notifications("handoff.expired") == []


def test_follow_up_done_in_time_is_never_escalated(harness):
    tasks = _discharge(harness)
    harness.client.post(f"/discharge/fhir/Task/{tasks['handoff'][0]}/$accept", headers=harness.auth(TEAM))
    harness.clock.advance(days=5)
    done = harness.client.post(f"/discharge/fhir/Task/{tasks['gp-visit'][0]}/$complete", headers=harness.auth(TEAM))
    assert done.status_code == 200 and done.json()["status"] == "completed"
    harness.clock.advance(days=30)
    harness.fire()
    assert harness.notifications("followup.missed") == []


def test_a_missed_follow_up_goes_to_the_team_first_then_after_the_grace_to_cpts_and_dac_if_complex(harness):
    tasks = _discharge(harness, complexity=("isolation",))
    harness.client.post(f"/discharge/fhir/Task/{tasks['handoff'][0]}/$accept", headers=harness.auth(TEAM))
    harness.clock.now = DISCHARGED_AT + timedelta(days=7, minutes=1)
    assert harness.fire() == 1
    assert harness.recipients("followup.missed") == {(TEAM, "team", "full")}
    read = harness.client.get(f"/discharge/fhir/Task/{tasks['gp-visit'][0]}", headers=harness.auth(TEAM))
    assert read.json()["businessStatus"]["text"] == "overdue"
    harness.clock.advance(hours=48)
    assert harness.fire() == 1
    level1 = [n for n in harness.notifications("followup.missed")][1:]
    assert {(n["recipient"], n["detail"]) for n in level1} == {
        (TEAM, "full"),
        (CPTS, "minimised"),
        (DAC, "full"),
    }
    assert harness.fire() == 0


def test_completing_after_the_first_escalation_stops_the_second(harness):
    tasks = _discharge(harness)
    harness.clock.now = DISCHARGED_AT + timedelta(days=7, minutes=1)
    harness.fire()
    harness.client.post(f"/discharge/fhir/Task/{tasks['gp-visit'][0]}/$complete", headers=harness.auth(TEAM))
    harness.clock.advance(days=5)
    harness.fire()
    assert len(harness.notifications("followup.missed")) == 1


def test_a_missed_follow_up_fires_once_across_a_restart(harness, tmp_path):
    tasks = _discharge(harness)
    harness.client.post(f"/discharge/fhir/Task/{tasks['handoff'][0]}/$accept", headers=harness.auth(TEAM))
    harness.clock.now = DISCHARGED_AT + timedelta(days=7, minutes=1)
    assert harness.fire() == 1
    runtime = harness.service.runtime
    again = bootstrap(
        runtime.settings, bus=runtime.bus, directory=runtime.directory, run_workers=False, clock=harness.clock
    )
    try:
        assert again.timers.run_once() == 0  # level 0 already fired before the "restart"
        harness.clock.advance(hours=48)
        assert again.timers.run_once() == 1  # level 1, durable across the restart
        assert harness.fire() == 0
    finally:
        again.runtime.engine.dispose()
    levels = [n["recipient"] for n in harness.notifications("followup.missed")]
    assert sorted(levels) == sorted([TEAM, TEAM, CPTS])


def test_two_workers_racing_fire_each_timer_exactly_once(harness):
    for n in range(5):
        harness.territory()
        harness.careteam()
        assert harness.post_message(f.full_discharge_message(plan=PLAN, nda=f"NDA-{n}")).status_code == 200
    harness.clock.now = DISCHARGED_AT + timedelta(days=30)
    workers = [TimerWorker(harness.service.bus, name=f"w{i}") for i in range(2)]
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def race(worker: TimerWorker) -> None:
        barrier.wait()
        counts.append(worker.run_once())

    threads = [threading.Thread(target=race, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # 5 handoff expiries + 5 items x 2 levels
    assert sum(counts) == 15
    with harness.service.runtime.sessions() as session:
        timers = session.execute(select(TimerRow)).scalars().all()
    assert all(t.fired_at is not None for t in timers)
    assert len(harness.notifications("handoff.expired")) == 5 * 3
