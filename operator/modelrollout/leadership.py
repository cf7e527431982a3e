"""Leader election through a coordination.k8s.io Lease: several replicas watch, one drives the rollouts.

The holder renews the Lease every ``retry_s``. Another replica takes it over only once the Lease's record
has not changed for ``lease_duration_s`` by that replica's own clock (as client-go's leaderelection does:
no trust in another machine's clock). Every create and update carries the resourceVersion it read, so of
two replicas racing for an expired Lease the API server lets exactly one win.

Writes are fenced (``write_budget``): the I/O layer asks, in its worker thread just before it sends each
write, how long is left until ``renew_deadline_s`` after the start of the last successful renewal, refuses
to send when nothing is, and caps the request's timeout to what is left. The renew deadline is shorter
than the lease duration, and a standby counts the lease duration from when it *saw* the holder's last
renewal, so a replica that was frozen (a long pause, a partition, SIGSTOP) finds its fence closed before
it sends anything once another may have taken over. What is left is the lease duration minus the renew
deadline (5 s by default): the time a request already sent may take to reach the API server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


class NotLeader(Exception):
    """A write was about to start without a valid claim to the Lease; it did not start."""


class LeaseConflict(Exception):
    """The Lease changed since it was read (or was created meanwhile): read it again."""


@dataclass(frozen=True)
class LeaseTiming:
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError("leader election needs 0 < retry < renew deadline < lease duration, not "
                             f"{self.retry_s:g}s / {self.renew_deadline_s:g}s / {self.lease_duration_s:g}s")


@dataclass(frozen=True)
class LeaseRecord:
    holder: str  # "" when released
    duration_s: float
    transitions: int
    resource_version: str
    renew_time: str = ""


class LeaseStore(Protocol):
    async def read(self) -> LeaseRecord | None: ...

    async def create(self, holder: str, duration_s: float) -> LeaseRecord:
        """Create the Lease held by ``holder``; LeaseConflict if it exists."""
        ...

    async def update(self, seen: LeaseRecord, holder: str, transitions: int) -> LeaseRecord:
        """Write holder and renewTime if the Lease is still at ``seen.resource_version``; else LeaseConflict."""
        ...


class LeaderElector:
    """Keeps or takes the Lease; says whether this replica may write now."""

    def __init__(self, store: LeaseStore, identity: str, timing: LeaseTiming | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[bool], None] | None = None) -> None:
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self._store = store
        self._clock = clock
        self._on_change = on_change
        self._renewed_at: float | None = None  # when the last successful claim's request started
        self._observed: LeaseRecord | None = None  # another holder's record, and when we first saw it so
        self._observed_at = 0.0
        self._leading = False

    @property
    def leading(self) -> bool:
        return self._leading and self.may_write()

    def may_write(self) -> bool:
        """A write may start now: within the renew deadline of the start of the last successful claim."""
        return self._time_left() > 0

    def _time_left(self) -> float:
        renewed = self._renewed_at
        return 0.0 if renewed is None else renewed + self.timing.renew_deadline_s - self._clock()

    def write_budget(self) -> float:
        """Seconds a write starting now may take (its request timeout is capped to them); raises NotLeader
        when none are left. Called by the I/O layer in its worker thread, just before each request is sent."""
        left = self._time_left()
        if left <= 0:
            log.info("%s refused to send a write: it does not hold the Lease", self.identity)
            raise NotLeader(f"{self.identity} does not hold the Lease")
        log.debug("%s sends a write with %.1fs left on its claim", self.identity, left)
        return left

    async def run(self, stop: asyncio.Event) -> None:
        """Claim or renew every ``retry_s`` until stop is set; then release the Lease if held."""
        while not stop.is_set():
            await self.try_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.timing.retry_s)
        await self.release()

    async def try_once(self) -> None:
        started = self._clock()  # a claim counts from before its request: the fence errs on the safe side
        try:
            record = await self._store.read()
            seen = self._clock()  # another's record counts from when we saw it: the takeover errs likewise
            if record is None:
                await self._store.create(self.identity, self.timing.lease_duration_s)
                self._claimed(started)
            elif record.holder == self.identity:
                await self._store.update(record, self.identity, record.transitions)
                self._claimed(started)
            elif self._expired(record, seen):
                await self._store.update(record, self.identity, record.transitions + 1)
                log.info("%s took the Lease over from %s", self.identity, record.holder or "(released)")
                self._claimed(started)
            else:
                self._set_leading(False)
        except LeaseConflict:
            self._lapse_if_due()
        except Exception as exc:  # the API server may be away: leadership lapses at the renew deadline
            log.warning("%s could not renew the Lease: %s", self.identity, exc)
            self._lapse_if_due()

    async def release(self) -> None:
        """On a clean stop: hand the Lease back so that another replica takes it at once."""
        if not self.may_write():
            return
        self._renewed_at = None
        self._set_leading(False)
        try:
            record = await self._store.read()
            if record is not None and record.holder == self.identity:
                await self._store.update(record, "", record.transitions)
        except Exception as exc:  # the others take it over when it expires
            log.warning("%s could not release the Lease: %s", self.identity, exc)

    def _expired(self, record: LeaseRecord, now: float) -> bool:
        if record.holder == "":
            return True
        if self._observed != record:  # it changed: its holder is alive; the clock starts again
            self._observed, self._observed_at = record, now
            return False
        return now - self._observed_at >= record.duration_s

    def _claimed(self, started: float) -> None:
        self._renewed_at = started
        self._observed = None
        self._set_leading(True)

    def _lapse_if_due(self) -> None:
        if not self.may_write():
            self._set_leading(False)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        log.info("%s %s leading", self.identity, "started" if leading else "stopped")
        if not leading:
            self._renewed_at = None
        if self._on_change is not None:
            self._on_change(leading)


# ------------------------------------------------------------------ the Lease through the API server


class KubernetesLeaseStore:
    """The Lease ``namespace/name`` through CoordinationV1Api; every call has a request timeout."""

    def __init__(self, api: Any, namespace: str, name: str, timeout_s: float,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._api, self._namespace, self._name, self._timeout, self._now = api, namespace, name, timeout_s, now
        # Its own thread: a renewal never queues behind the ticks' Kubernetes I/O.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lease")

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, lambda: fn(*args, _request_timeout=self._timeout))

    async def read(self) -> LeaseRecord | None:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = await self._run(self._api.read_namespaced_lease, self._name, self._namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _record(lease)

    async def create(self, holder: str, duration_s: float) -> LeaseRecord:
        from kubernetes.client.exceptions import ApiException

        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self._name, "namespace": self._namespace},
                "spec": self._spec(holder, duration_s, 0, acquired=True)}
        try:
            lease = await self._run(self._api.create_namespaced_lease, self._namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict("the Lease was created meanwhile") from exc
            raise
        return _record(lease)

    async def update(self, seen: LeaseRecord, holder: str, transitions: int) -> LeaseRecord:
        from kubernetes.client.exceptions import ApiException

        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self._name, "namespace": self._namespace,
                             "resourceVersion": seen.resource_version},
                "spec": self._spec(holder, seen.duration_s, transitions, acquired=holder != seen.holder)}
        try:
            lease = await self._run(self._api.replace_namespaced_lease, self._name, self._namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                raise LeaseConflict("the Lease changed meanwhile") from exc
            raise
        return _record(lease)

    def _spec(self, holder: str, duration_s: float, transitions: int, *, acquired: bool) -> dict[str, Any]:
        now = self._now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        # Rounded up: a standby then waits at least as long as this replica's renew deadline assumes.
        spec: dict[str, Any] = {"holderIdentity": holder or None, "leaseDurationSeconds": max(1, math.ceil(duration_s)),
                                "renewTime": now, "leaseTransitions": transitions}
        if acquired:
            spec["acquireTime"] = now
        return spec


def _record(lease: Any) -> LeaseRecord:
    spec = lease.spec
    renew = spec.renew_time
    return LeaseRecord(holder=spec.holder_identity or "", duration_s=float(spec.lease_duration_seconds or 15),
                       transitions=int(spec.lease_transitions or 0),
                       resource_version=str(lease.metadata.resource_version),
                       renew_time=renew.isoformat() if isinstance(renew, dt.datetime) else str(renew or ""))


# ------------------------------------------------------------------ fenced Events


class FencedEvents:
    """Events start only while the fence allows (the store and the traffic backend check it themselves, in
    their I/O threads, just before each write is sent)."""

    def __init__(self, events: Any, fence: Callable[[], object]) -> None:
        self._events, self._fence = events, fence  # raises NotLeader when this replica may not write

    async def post(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self._fence()
        await self._events.post(obj, type_, reason, message)
