"""Leader election (leadership.py) against an in-memory Lease with the API server's optimistic concurrency,
on a fake clock.

Invariants pinned here:
- at most one replica may write at any moment of the fake clock, however their tries interleave;
- a replica takes the Lease over only after its record stayed unchanged for the lease duration;
- a holder whose renewals fail (or who was frozen) stops writing at the renew deadline, before anyone
  else may take over;
- of two replicas racing for an expired Lease, the resourceVersion lets exactly one win.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import replace

import pytest
from modelrollout.leadership import (
    LeaderElector,
    LeaseConflict,
    LeaseRecord,
    LeaseTiming,
    NotLeader,
)

TIMING = LeaseTiming(lease_duration_s=15.0, renew_deadline_s=10.0, retry_s=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryLease:
    """One Lease with a resourceVersion that changes on every write; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.versions = itertools.count(1)
        self.down = False
        self.writes: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise OSError("connection refused")

    async def read(self) -> LeaseRecord | None:
        self._check()
        return self.record

    async def create(self, holder: str, duration_s: float) -> LeaseRecord:
        self._check()
        if self.record is not None:
            raise LeaseConflict("exists")
        self.record = LeaseRecord(holder, duration_s, 0, str(next(self.versions)))
        self.writes.append(holder)
        return self.record

    async def update(self, seen: LeaseRecord, holder: str, transitions: int) -> LeaseRecord:
        self._check()
        if self.record is None or self.record.resource_version != seen.resource_version:
            raise LeaseConflict("stale")
        self.record = replace(self.record, holder=holder, transitions=transitions,
                              resource_version=str(next(self.versions)))
        self.writes.append(holder)
        return self.record


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def two(lease: MemoryLease, clock: Clock) -> tuple[LeaderElector, LeaderElector]:
    return (LeaderElector(lease, "a", TIMING, clock=clock), LeaderElector(lease, "b", TIMING, clock=clock))


def test_the_first_replica_takes_the_lease_and_the_second_stands_by() -> None:
    lease, clock = MemoryLease(), Clock()
    a, b = two(lease, clock)
    run(a.try_once())
    run(b.try_once())
    assert a.leading and a.may_write()
    assert not b.leading and not b.may_write()
    assert lease.record is not None and lease.record.holder == "a"


def test_a_standby_takes_over_only_after_the_record_stayed_unchanged_for_the_lease_duration() -> None:
    lease, clock = MemoryLease(), Clock()
    a, b = two(lease, clock)
    run(a.try_once())
    run(b.try_once())  # b sees a's record at t=0
    # a dies: its record stays as it was
    for _ in range(7):
        clock.now += 2.0
        run(b.try_once())
        assert not b.may_write(), clock.now
    clock.now += 1.0  # 15 s since b first saw the record
    run(b.try_once())
    assert b.leading and lease.record is not None and lease.record.holder == "b"
    assert lease.record.transitions == 1


def test_a_renewing_holder_is_never_taken_over() -> None:
    lease, clock = MemoryLease(), Clock()
    a, b = two(lease, clock)
    for _ in range(50):
        run(a.try_once())
        run(b.try_once())
        clock.now += 2.0
    assert a.leading and not b.may_write()
    assert set(lease.writes) == {"a"}


def test_a_holder_that_cannot_renew_stops_writing_at_the_renew_deadline_before_anyone_may_take_over() -> None:
    lease, clock = MemoryLease(), Clock()
    a, _ = two(lease, clock)
    run(a.try_once())
    claimed = clock.now
    lease.down = True
    clock.now = claimed + TIMING.renew_deadline_s - 0.5
    run(a.try_once())
    assert a.may_write()
    clock.now = claimed + TIMING.renew_deadline_s
    run(a.try_once())
    assert not a.may_write() and not a.leading
    with pytest.raises(NotLeader):
        a.write_budget()
    assert TIMING.renew_deadline_s < TIMING.lease_duration_s  # others wait the longer lease duration


def test_a_write_gets_only_the_time_left_before_the_renew_deadline() -> None:
    lease, clock = MemoryLease(), Clock()
    a, _ = two(lease, clock)
    run(a.try_once())
    clock.now += 7.5
    assert a.write_budget() == pytest.approx(TIMING.renew_deadline_s - 7.5)  # the request timeout's cap


def test_a_slow_read_dates_the_holders_record_from_when_it_returned() -> None:
    """B's read starts, A renews meanwhile, B's read returns A's new record late: B must count the lease
    duration from when it saw that record, or it takes over while A may still write."""
    lease, clock = MemoryLease(), Clock()
    a = LeaderElector(lease, "a", TIMING, clock=clock)
    run(a.try_once())

    class FirstReadSlow:
        slow = True

        async def read(self) -> LeaseRecord | None:
            if self.slow:
                self.slow = False
                clock.now += 6.0  # queued behind other requests
                await a.try_once()  # A renews meanwhile, then freezes
                clock.now += 0.6
            return await lease.read()

        async def create(self, holder: str, duration_s: float) -> LeaseRecord:
            return await lease.create(holder, duration_s)

        async def update(self, seen: LeaseRecord, holder: str, transitions: int) -> LeaseRecord:
            return await lease.update(seen, holder, transitions)

    b = LeaderElector(FirstReadSlow(), "b", TIMING, clock=clock)
    for _ in range(40):  # B looks every second
        run(b.try_once())
        assert not (a.may_write() and b.may_write()), clock.now
        clock.now += 1.0
    assert b.leading


def test_a_frozen_holder_finds_its_fence_closed_when_it_wakes() -> None:
    """SIGSTOP, a long pause: the holder's clock jumps past the renew deadline without a renewal; its
    first act on waking must not be a write."""
    lease, clock = MemoryLease(), Clock()
    a, b = two(lease, clock)
    run(a.try_once())
    run(b.try_once())
    clock.now += TIMING.lease_duration_s + 1  # a is frozen; b's view of the record is old enough
    run(b.try_once())
    assert b.may_write()
    assert not a.may_write()  # before a tries anything: its claim is past the deadline
    run(a.try_once())  # a wakes and looks: b holds it
    assert not a.may_write() and not a.leading and b.may_write()


def test_two_standbys_racing_for_an_expired_lease_elect_exactly_one() -> None:
    lease, clock = MemoryLease(), Clock()
    dead = LeaderElector(lease, "dead", TIMING, clock=clock)
    run(dead.try_once())
    b, c = LeaderElector(lease, "b", TIMING, clock=clock), LeaderElector(lease, "c", TIMING, clock=clock)
    run(b.try_once())
    run(c.try_once())
    clock.now += TIMING.lease_duration_s

    async def race() -> None:
        await asyncio.gather(b.try_once(), c.try_once())

    run(race())
    assert [b.may_write(), c.may_write()].count(True) == 1


def test_at_most_one_replica_may_write_at_any_moment() -> None:
    """Three replicas try in random order at random moments; some freeze, the API server sometimes fails."""
    handovers = sum(_random_run(random.Random(seed)) for seed in range(30))
    assert handovers >= 10  # leadership did move: the property was exercised, not idle


def _random_run(rng: random.Random) -> int:
    lease, clock = MemoryLease(), Clock()
    replicas = [LeaderElector(lease, name, TIMING, clock=clock) for name in "abc"]
    frozen_until = {r.identity: 0.0 for r in replicas}
    for _ in range(400):
        clock.now += rng.uniform(0.1, 1.5)
        lease.down = rng.random() < 0.1
        replica = rng.choice(replicas)
        if rng.random() < 0.03:
            frozen_until[replica.identity] = clock.now + rng.uniform(5, 40)
        if clock.now >= frozen_until[replica.identity]:
            run(replica.try_once())
        assert sum(r.may_write() for r in replicas) <= 1, [(r.identity, r.may_write()) for r in replicas]
    return sum(1 for x, y in itertools.pairwise(lease.writes) if x != y)


def test_the_timing_must_leave_the_old_leader_time_to_stop() -> None:
    with pytest.raises(ValueError, match="retry < renew deadline < lease duration"):
        LeaseTiming(lease_duration_s=10, renew_deadline_s=10, retry_s=2)
