"""ConsumerLoop recovery: a consumer whose group coordinator is gone is replaced, and nothing is skipped."""

from __future__ import annotations

import threading

from shared.bus.base import BusUnavailable, Rebalancing, Record
from shared.bus.envelope import Envelope
from shared.bus.worker import ConsumerLoop
from tests.infra.wait import wait_for

TOPIC = "t"


def record(offset: int) -> Record:
    envelope = Envelope(type="test.event", key="k", data={"n": offset}, source="test")
    return Record(TOPIC, 0, offset, "k", envelope.to_json().encode())


class FakeGroup:
    """One partition and its committed offset, shared by the consumers the loop creates."""

    def __init__(self, total: int, broken_commits: int, error: type[BusUnavailable] = BusUnavailable) -> None:
        self.log = [record(n) for n in range(total)]
        self.committed = 0
        self.consumers: list[FakeConsumer] = []
        self.broken_commits = broken_commits
        self.error = error


class FakeConsumer:
    def __init__(self, group: FakeGroup, broken: bool) -> None:
        self.group, self.broken = group, broken
        self.position = group.committed  # a new member starts from the committed offset
        self.closed = False

    def poll(self, max_records: int = 100, timeout: float = 0.5) -> list[Record]:
        batch = self.group.log[self.position:self.position + 3]
        self.position += len(batch)
        return batch

    def commit(self, rec: Record) -> None:
        if self.broken:
            raise self.group.error("coordinator gone")
        self.group.committed = rec.offset + 1

    def rewind(self, rec: Record) -> None:
        self.position = rec.offset

    def close(self) -> None:
        self.closed = True


class FakeBus:
    name = "fake"

    def __init__(self, group: FakeGroup) -> None:
        self.group = group

    def consumer(self, group_id, topics) -> FakeConsumer:
        consumer = FakeConsumer(self.group, broken=len(self.group.consumers) < self.group.broken_commits)
        self.group.consumers.append(consumer)
        return consumer


def run_until(loop: ConsumerLoop, done) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(done, timeout=10, message="the loop to commit every record")
    finally:
        stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_consumer_that_cannot_commit_is_replaced_and_resumes_from_the_committed_offset():
    group = FakeGroup(total=10, broken_commits=1)
    handled: list[int] = []
    loop = ConsumerLoop(FakeBus(group), "g", {TOPIC: lambda env: handled.append(env.data["n"])},
                        backoff_seconds=0.001, recreate_after=3)
    group.committed = 4  # earlier records were handled and committed by a previous member
    run_until(loop, lambda: group.committed == 10)
    assert group.committed == 10
    assert len(group.consumers) == 2 and group.consumers[0].closed  # replaced after three failed commits
    # Record 4 was handled but never committed by the broken member: handled again, nothing skipped.
    assert sorted(set(handled)) == list(range(4, 10))
    first = [n for i, n in enumerate(handled) if n not in handled[:i]]
    assert first == sorted(first)  # order of first handling kept


def test_a_rebalance_refusing_commits_is_retried_without_back_off_then_replaced():
    group = FakeGroup(total=6, broken_commits=1, error=Rebalancing)
    handled: list[int] = []
    loop = ConsumerLoop(FakeBus(group), "g", {TOPIC: lambda env: handled.append(env.data["n"])},
                        backoff_seconds=0.001, recreate_after=2)
    run_until(loop, lambda: group.committed == 6)
    assert group.committed == 6
    assert group.consumers[0].closed
    assert sorted(set(handled)) == list(range(6))


def test_a_batch_over_its_time_budget_stops_and_rewinds_the_rest():
    group = FakeGroup(total=3, broken_commits=0)
    handled: list[int] = []
    loop = ConsumerLoop(FakeBus(group), "g", {TOPIC: lambda env: handled.append(env.data["n"])}, batch_seconds=0)
    assert loop.run_once() == 1  # one record, then the budget is spent: poll again before going on
    assert handled == [0] and group.committed == 1
    assert group.consumers[0].position == 1  # the unhandled records come back on the next poll
    assert loop.run_once() == 1 and loop.run_once() == 1
    assert handled == [0, 1, 2] and group.committed == 3
