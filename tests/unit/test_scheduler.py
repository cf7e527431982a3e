"""The tick scheduler: due times, re-runs on change, forgetting, bounded concurrency, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from modelrollout.scheduler import TickScheduler


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(poll(), timeout)


@asynccontextmanager
async def running(scheduler: TickScheduler) -> AsyncIterator[TickScheduler]:
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        yield scheduler
    finally:
        stop.set()
        await asyncio.wait_for(task, 3)


@pytest.mark.asyncio
async def test_ticks_when_notified_and_again_when_due() -> None:
    calls: list[tuple[str, str]] = []

    async def tick(namespace: str, name: str) -> float | None:
        calls.append((namespace, name))
        return 0.05

    async with running(TickScheduler(tick)) as scheduler:
        scheduler.notify("ns", "a")
        await until(lambda: len(calls) >= 3)
    assert set(calls) == {("ns", "a")}


@pytest.mark.asyncio
async def test_none_means_gone_and_forget_stops_ticks() -> None:
    calls: list[str] = []

    async def tick(namespace: str, name: str) -> float | None:
        calls.append(name)
        return None if name == "gone" else 0.02

    async with running(TickScheduler(tick)) as scheduler:
        scheduler.notify("ns", "gone")
        scheduler.notify("ns", "kept")
        await until(lambda: calls.count("kept") >= 3)
        scheduler.forget("ns", "kept")
        await asyncio.sleep(0)  # let a tick already under way finish
        settled = len(calls)
        await asyncio.sleep(0.1)
        assert scheduler.scheduled == 0
    assert calls.count("gone") == 1
    assert len(calls) <= settled + 1


@pytest.mark.asyncio
async def test_change_during_a_tick_ticks_again_right_after() -> None:
    release = asyncio.Event()
    calls = 0

    async def tick(namespace: str, name: str) -> float | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await release.wait()
        return 60.0

    async with running(TickScheduler(tick)) as scheduler:
        scheduler.notify("ns", "a")
        await until(lambda: calls == 1)
        scheduler.notify("ns", "a")  # while the first tick is still running
        release.set()
        await until(lambda: calls == 2)


@pytest.mark.asyncio
async def test_concurrency_is_bounded() -> None:
    active = peak = done = 0

    async def tick(namespace: str, name: str) -> float | None:
        nonlocal active, peak, done
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        done += 1
        return None

    async with running(TickScheduler(tick, concurrency=3)) as scheduler:
        for i in range(12):
            scheduler.notify("ns", f"r{i}")
        await until(lambda: done == 12)
    assert peak == 3


@pytest.mark.asyncio
async def test_a_failing_tick_is_retried_after_backoff() -> None:
    calls = 0

    async def tick(namespace: str, name: str) -> float | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return None

    async with running(TickScheduler(tick, error_backoff_s=0.05)) as scheduler:
        scheduler.notify("ns", "a")
        await until(lambda: calls == 2)


@pytest.mark.asyncio
async def test_a_tick_that_hangs_is_cut_at_its_deadline_and_never_delays_another_rollout() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    async def tick(namespace: str, name: str) -> float | None:
        calls.append(name)
        if name == "slow-prometheus":
            await release.wait()  # never set: a Prometheus that accepts connections and hangs
        return 0.02

    async with running(TickScheduler(tick, concurrency=2, tick_deadline_s=0.2)) as scheduler:
        scheduler.notify("ns", "slow-prometheus")
        scheduler.notify("ns", "rolling-back")
        await until(lambda: calls.count("rolling-back") >= 5, timeout=1.0)  # while the other one hangs
        await until(lambda: calls.count("slow-prometheus") >= 2, timeout=12.0)  # cut and scheduled again


@pytest.mark.asyncio
async def test_the_loop_survives_its_own_failure_and_keeps_ticking(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def tick(namespace: str, name: str) -> float | None:
        calls.append(name)
        return 0.02

    scheduler = TickScheduler(tick, error_backoff_s=0.05)
    original = scheduler._start_due
    failures = iter([RuntimeError("dictionary changed size during iteration")])

    def flaky() -> float:
        for exc in failures:
            raise exc
        return original()

    monkeypatch.setattr(scheduler, "_start_due", flaky)
    async with running(scheduler):
        scheduler.notify("ns", "a")
        await until(lambda: len(calls) >= 3)


@pytest.mark.asyncio
async def test_a_replica_that_does_not_lead_starts_no_tick_and_starts_them_all_once_it_leads() -> None:
    calls: list[str] = []
    leading = False

    async def tick(namespace: str, name: str) -> float | None:
        calls.append(name)
        return 30.0

    async with running(TickScheduler(tick, active=lambda: leading)) as scheduler:
        scheduler.notify("ns", "a")  # the watch goes on while standing by
        scheduler.notify("ns", "b")
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert calls == []
        leading = True
        scheduler.wake()
        await until(lambda: sorted(calls) == ["a", "b"])
        assert scheduler.scheduled == 2


@pytest.mark.asyncio
async def test_a_notified_rollout_goes_before_every_due_timer() -> None:
    """An abort (the watch notifies) waits for a free slot only, never behind the routine ticks that are due."""
    order: list[str] = []

    async def tick(namespace: str, name: str) -> float | None:
        order.append(name)
        await asyncio.sleep(0.002)
        return 0.0 if name != "aborted" else None  # the idle ones are due again at once, for ever

    async with running(TickScheduler(tick, concurrency=2)) as scheduler:
        for i in range(50):
            scheduler.notify("ns", f"idle-{i}")
        await until(lambda: len(order) >= 120)  # every idle rollout has ticked and is due again
        scheduler.notify("ns", "aborted")
        asked_at = len(order)
        await until(lambda: "aborted" in order)
    # At most the two ticks holding the slots (and what started while notify ran) go first.
    assert order.index("aborted") - asked_at <= 2, order[asked_at:]


@pytest.mark.asyncio
async def test_due_timers_tick_earliest_first() -> None:
    order: list[str] = []
    delays = {"c": 0.15, "a": 0.05, "b": 0.10}

    async def tick(namespace: str, name: str) -> float | None:
        order.append(name)
        return delays.pop(name, None)  # each asks for one later tick, then nothing

    async with running(TickScheduler(tick, concurrency=1)) as scheduler:
        for name in ("c", "a", "b"):
            scheduler.notify("ns", name)
        await until(lambda: len(order) == 6)
    assert order[3:] == ["a", "b", "c"]


@pytest.mark.asyncio
async def test_ten_thousand_due_rollouts_hold_no_more_tasks_than_slots() -> None:
    """Ticks start when a slot is free: no task per waiting rollout (memory and loop time stay flat)."""
    peak_tasks = 0
    done = 0

    async def tick(namespace: str, name: str) -> float | None:
        nonlocal peak_tasks, done
        peak_tasks = max(peak_tasks, len(asyncio.all_tasks()))
        await asyncio.sleep(0)
        done += 1
        return None

    async with running(TickScheduler(tick, concurrency=4)) as scheduler:
        for i in range(10_000):
            scheduler.notify("ns", f"r{i}")
        await until(lambda: done == 10_000, timeout=30)
    # The four ticks plus a constant few: the loop, its waiters (and cancelled ones not yet collected), the test.
    assert peak_tasks <= 4 + 12, peak_tasks
