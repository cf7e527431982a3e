"""When each rollout ticks next: one small scheduler for every rollout the operator watches.

Kopf's daemons and timers would give each rollout its own task, but they put a finalizer on every
object, so a ModelRollout could not be deleted while the operator is down. This scheduler needs no
finalizer: the watch (``notify``/``forget``) tells it what exists, each tick says when it wants the
next one (or nothing until its object or target changes), and at most ``concurrency`` ticks run at once
however many rollouts there are.

Order: a rollout the watch notified (an action, a spec edit, a deletion, a new rollout, a change of its
target) goes before every rollout whose timer is due, so a manual abort never waits behind thousands of
routine analyses; due timers go earliest first, so none waits longer than the rest. Ticks are started
only when a slot is free: nothing queues thousands of tasks on a semaphore.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable

Key = tuple[str, str]  # (namespace, name)
# Seconds until the next tick; None: none until the watch notifies again (finished, or the object is gone).
TickFn = Callable[[str, str], Awaitable[float | None]]

log = logging.getLogger(__name__)


class TickScheduler:
    def __init__(self, tick: TickFn, *, concurrency: int = 16, error_backoff_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, tick_deadline_s: float = 60.0,
                 active: Callable[[], bool] = lambda: True) -> None:
        self._tick = tick
        self._active = active  # False: another replica leads; start no tick (the watch still notifies)
        self._tick_deadline_s = tick_deadline_s
        self._clock = clock
        self._error_backoff_s = error_backoff_s
        self._concurrency = concurrency
        self._urgent: dict[Key, None] = {}  # notified by the watch, in arrival order
        self._due: dict[Key, int] = {}  # key -> the sequence number of its live timer entry
        self._timers: list[tuple[float, int, Key]] = []  # (due at, sequence, key); stale entries skipped
        self._sequence = itertools.count()
        self._running: set[Key] = set()
        self._again: set[Key] = set()  # notified while its tick ran: tick once more, urgently, right after
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def scheduled(self) -> int:
        """Rollouts with a tick running, due or pending (not those idle until notified)."""
        return len(self._urgent.keys() | self._due.keys() | self._running)

    @property
    def running(self) -> int:
        return len(self._running)

    def notify(self, namespace: str, name: str) -> None:
        """The object (or its target) exists and may have changed: tick it before any routine tick."""
        key = (namespace, name)
        if key in self._running:
            self._again.add(key)
        else:
            self._due.pop(key, None)
            self._urgent[key] = None
        self._changed.set()

    def forget(self, namespace: str, name: str) -> None:
        """The object was deleted: stop ticking it (a tick under way finds it gone by itself)."""
        key = (namespace, name)
        self._urgent.pop(key, None)
        self._due.pop(key, None)
        self._again.discard(key)

    def wake(self) -> None:
        """Look at what is due now (e.g. this replica has just become the leader)."""
        self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Start due ticks until stop is set; then wait for the ticks under way."""
        while not stop.is_set():
            if not self._active():
                self._changed.clear()
                await _first_of(self._changed, stop, timeout=1.0)
                continue
            try:
                wait_s = self._start_due()
            except Exception:  # a bug here must not silently stop every rollout: log it and go on
                log.exception("the tick scheduler failed to start due ticks; trying again")
                wait_s = self._error_backoff_s
            await _first_of(self._changed, stop, timeout=wait_s)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _schedule(self, key: Key, delay: float) -> None:
        sequence = next(self._sequence)
        self._due[key] = sequence
        heapq.heappush(self._timers, (self._clock() + delay, sequence, key))

    def _next_due(self) -> Key | None:
        """The next rollout to tick now: a notified one first, then the earliest due timer."""
        for key in self._urgent:
            if key not in self._running:
                del self._urgent[key]
                return key
        now = self._clock()
        while self._timers:
            at, sequence, key = self._timers[0]
            if self._due.get(key) != sequence:  # replaced, forgotten or notified since: drop the entry
                heapq.heappop(self._timers)
                continue
            if at > now:
                return None
            heapq.heappop(self._timers)
            del self._due[key]
            return key
        return None

    def _wait_s(self) -> float:
        """How long until a timer is due (stale entries at the top dropped); a minute when none is."""
        while self._timers and self._due.get(self._timers[0][2]) != self._timers[0][1]:
            heapq.heappop(self._timers)
        if not self._timers:
            return 60.0
        return max(0.0, self._timers[0][0] - self._clock())

    def _start_due(self) -> float:
        """Start due ticks while slots are free; return how long to wait for the next one."""
        self._changed.clear()
        while len(self._running) < self._concurrency:
            key = self._next_due()
            if key is None:
                break
            self._running.add(key)
            task = asyncio.create_task(self._run_one(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if len(self._running) >= self._concurrency:
            return 60.0  # a finishing tick sets _changed
        return self._wait_s()

    async def _run_one(self, key: Key) -> None:
        delay: float | None
        if not self._active():  # leadership lapsed before this tick began: start nothing
            delay = self._error_backoff_s
        else:
            try:
                delay = await asyncio.wait_for(self._tick(*key), timeout=self._tick_deadline_s)
            except asyncio.CancelledError:
                self._running.discard(key)
                raise
            except TimeoutError:
                log.warning("tick of %s/%s did not finish within %.0fs; retrying", *key, self._tick_deadline_s)
                delay = self._error_backoff_s
            except Exception:  # one rollout's failure must not stop the others
                log.exception("tick of %s/%s failed; retrying in %.0fs", *key, self._error_backoff_s)
                delay = self._error_backoff_s
        self._running.discard(key)
        if key in self._again:
            self._again.discard(key)
            self._urgent[key] = None
        elif delay is not None:
            self._schedule(key, delay)
        self._changed.set()


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
