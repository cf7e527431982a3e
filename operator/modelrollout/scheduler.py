"""When each rollout ticks next: one small scheduler for every rollout the operator watches.

Kopf's daemons and timers would give each rollout its own task, but they put a finalizer on every
object, so a ModelRollout could not be deleted while the operator is down. This scheduler needs no
finalizer: the watch (``notify``/``forget``) tells it what exists, each tick says when it wants the
next one, and a bounded number of ticks run at once however many rollouts there are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

Key = tuple[str, str]  # (namespace, name)
TickFn = Callable[[str, str], Awaitable[float | None]]  # seconds until the next tick; None: the object is gone

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
        self._slots = asyncio.Semaphore(concurrency)
        self._due: dict[Key, float] = {}
        self._running: set[Key] = set()
        self._again: set[Key] = set()  # changed while its tick ran: tick once more right after
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def scheduled(self) -> int:
        return len(self._due) + len(self._running)

    def notify(self, namespace: str, name: str) -> None:
        """The object exists and may have changed: tick it as soon as possible."""
        key = (namespace, name)
        if key in self._running:
            self._again.add(key)
        else:
            self._due[key] = self._clock()
        self._changed.set()

    def forget(self, namespace: str, name: str) -> None:
        """The object was deleted: stop ticking it (a tick under way finds it gone by itself)."""
        key = (namespace, name)
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

    def _start_due(self) -> float:
        """Start every due tick; return how long to wait for the next one."""
        now = self._clock()
        for key in [k for k, at in list(self._due.items()) if at <= now and k not in self._running]:
            del self._due[key]
            self._running.add(key)
            task = asyncio.create_task(self._run_one(key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._changed.clear()
        return max(0.0, min(self._due.values(), default=now + 60.0) - now)

    async def _run_one(self, key: Key) -> None:
        delay: float | None
        async with self._slots:
            if not self._active():  # leadership lapsed while this tick waited for a slot: start nothing
                self._running.discard(key)
                self._due[key] = self._clock() + self._error_backoff_s
                self._changed.set()
                return
            try:
                delay = await asyncio.wait_for(self._tick(*key), timeout=self._tick_deadline_s)
            except asyncio.CancelledError:
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
            delay = 0.0
        if delay is not None:
            self._due[key] = self._clock() + delay
        self._changed.set()


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
