"""The watch's cache: reads come from memory, and a copy that lags the API server never moves traffic.

The invariant: a rollback on record is never undone by a decision taken on an older copy of the rollout
(a watch event still on its way). Conditional writes refuse a stale copy (409); a tick that writes nothing
to the rollout must confirm its copy before it changes traffic.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from typing import Any, cast

import pytest
from modelrollout.api import Phase
from modelrollout.cache import ObjectCache, TargetIndex, targets_of
from modelrollout.reconcile import Conflict, Reconciler
from modelrollout.store import CachedStore

from tests.unit.conftest import spec_dict
from tests.unit.fakes import NAME, NAMESPACE, Cluster, Crash
from tests.unit.test_reconcile import LATENCY, SUCCESS, canary, tick_until


def obj(version: str, phase: str = "Progressing") -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "r", "resourceVersion": version}, "status": {"phase": phase}}


def test_a_late_event_older_than_what_we_wrote_does_not_replace_it() -> None:
    cache = ObjectCache()
    cache.put(obj("12", "RolledBack"))
    cache.put(obj("11", "Progressing"))  # the watch delivers an older version after our write's answer
    held = cache.get("ns", "r")
    assert held is not None and held["status"]["phase"] == "RolledBack"
    cache.put(obj("13", "RolledBack"))
    assert cache.get("ns", "r")["metadata"]["resourceVersion"] == "13"  # type: ignore[index]
    cache.drop("ns", "r")
    assert cache.get("ns", "r") is None and len(cache) == 0


def test_a_watch_event_puts_the_copy_and_a_deletion_drops_it() -> None:
    cache = ObjectCache()
    cache.apply({"type": None, "object": obj("5")})  # listed
    cache.apply({"type": "MODIFIED", "object": obj("6", "Paused")})
    held = cache.get("ns", "r")
    assert held is not None and held["status"]["phase"] == "Paused"
    cache.apply({"type": "DELETED", "object": obj("7", "Paused")})
    assert cache.get("ns", "r") is None and len(cache) == 0


def test_a_read_that_answers_after_the_deletion_does_not_bring_the_object_back() -> None:
    """A GET sent before the deletion and answered after its DELETED event carries the object as it was;
    so may a late event. Neither may put it back: ticks would go on acting on an object that is gone."""
    cache = ObjectCache()
    answers = [obj("12"), None]

    class ApiServer:
        async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
            if answers[0] is not None:  # the deletion's event lands while this GET is in flight
                cache.apply({"type": "DELETED", "object": obj("14")})
            return answers.pop(0)

    store = CachedStore(cast(Any, ApiServer()), cache)
    assert asyncio.run(store.get("ns", "r")) is not None  # this read's caller saw it; the cache must not keep it
    assert cache.get("ns", "r") is None
    cache.put(obj("13"))  # an event from before the deletion, late
    assert cache.get("ns", "r") is None
    assert asyncio.run(store.get("ns", "r")) is None and answers == []  # the next read asks the API server


def test_an_object_re_created_under_a_deleted_ones_name_is_cached() -> None:
    cache = ObjectCache()
    cache.apply({"type": None, "object": obj("12")})
    cache.apply({"type": "DELETED", "object": obj("14")})
    cache.apply({"type": "ADDED", "object": obj("20", "Pending")})  # newer than the deletion: a new object
    held = cache.get("ns", "r")
    assert held is not None and held["status"]["phase"] == "Pending"
    cache.put(obj("12"))  # the old one's copy, late: older than what is held
    assert cache.get("ns", "r")["metadata"]["resourceVersion"] == "20"  # type: ignore[index]


def test_deletions_are_remembered_for_a_while_and_a_bounded_number() -> None:
    now = [0.0]
    cache = ObjectCache(tombstone_ttl_s=60, tombstone_limit=2, clock=lambda: now[0])

    def named(name: str, version: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": version}}

    for name in ("a", "b", "c"):  # three deletions, two remembered: the oldest goes
        cache.apply({"type": "DELETED", "object": named(name, "10")})
    for name in ("b", "c"):
        cache.put(named(name, "9"))
        assert cache.get("ns", name) is None
    cache.put(named("a", "9"))
    assert cache.get("ns", "a") is not None
    now[0] = 61.0  # and after their time, none
    cache.put(named("b", "9"))
    assert cache.get("ns", "b") is not None and not cache._tombstones


def cached_reconciler(cluster: Cluster, store: CachedStore) -> Reconciler:
    reconciler = cluster.reconciler()
    reconciler.store = store
    return reconciler


def test_reads_come_from_the_cache_once_it_holds_the_rollout() -> None:
    cluster = Cluster.make(canary())
    reads = 0
    inner_get = cluster.store.get

    async def counted_get(namespace: str, name: str) -> dict[str, Any] | None:
        nonlocal reads
        reads += 1
        return await inner_get(namespace, name)

    cluster.store.get = counted_get  # type: ignore[method-assign]
    store = CachedStore(cluster.store, ObjectCache())
    for _ in range(30):
        cluster.now += dt.timedelta(seconds=1)
        asyncio.run(cached_reconciler(cluster, store).tick(NAMESPACE, NAME))
    # The whole canary ran on one read: each tick's status write refreshed the copy, and each traffic
    # change followed a status write (a change without one would have confirmed the copy with a read).
    assert cluster.store.status.phase is Phase.SUCCEEDED, cluster.store.status
    assert reads <= 3, reads


def test_a_copy_that_lags_a_rollback_never_brings_the_candidate_back() -> None:
    """The rollout asked for 60% (on record) and that write was lost; it then rolled back, and that traffic
    write was lost too, so the candidate still serves 20%. A tick that reads the copy from before the
    rollback finds its status already right (nothing to write) and the world behind it: it asks for 60%
    again. That must not reach the deployment."""
    cluster = Cluster.make(canary(failureLimit=1))
    tick_until(cluster, lambda: cluster.seldon.candidate_weight() == 20 and cluster.store.status.serving_since)
    apply = cluster.seldon.apply
    lose = {"weight-60": True, "every write": False}

    async def losing_apply(namespace: str, target: Any, change: Any) -> bool:
        if lose["every write"] or (lose["weight-60"] and change.candidate_weight == 60):
            lose["weight-60"] = False
            raise Crash("the traffic write is lost")
        return await apply(namespace, target, change)

    cluster.seldon.apply = losing_apply  # type: ignore[method-assign]
    tick_until(cluster, lambda: not lose["weight-60"])
    before_the_rollback, read_at = copy.deepcopy(cluster.store.obj), cluster.now  # a lagging watch's copy
    lose["every write"] = True
    cluster.prometheus.success_rate = 0.5
    tick_until(cluster, lambda: cluster.store.status.phase is Phase.ROLLED_BACK)
    lose["every write"] = False
    assert cluster.seldon.candidate_weight() == 20  # the rollback is on record, its traffic write was lost
    rolled_back_at = len(cluster.seldon.applied)

    cache = ObjectCache()
    store = CachedStore(cluster.store, cache)
    cluster.now = read_at + dt.timedelta(seconds=1)  # nothing is due in the copy: no check, no status change
    outcomes = []
    for _ in range(3):
        cache.drop(NAMESPACE, NAME)
        cache.put(copy.deepcopy(before_the_rollback))
        try:
            outcomes.append(asyncio.run(cached_reconciler(cluster, store).tick(NAMESPACE, NAME)))
        except Conflict:  # ends the tick, as in the operator (which then reads again)
            outcomes.append("conflict")
    assert outcomes == ["conflict"] * 3, outcomes
    assert [c.candidate_weight for c, _ in cluster.seldon.applied[rolled_back_at:]] == []
    # With the current copy the next tick completes the rollback.
    tick_until(cluster, lambda: cluster.seldon.candidate() is None)
    assert cluster.store.status.phase is Phase.ROLLED_BACK


def test_a_rollout_held_at_a_pause_writes_its_status_only_when_a_check_lands() -> None:
    """Status is written when something a reader needs changed: at an indefinite pause with a 10s interval,
    one write per check, not one per tick (10,000 rollouts would otherwise write 10,000 times a tick)."""
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]
    cluster = Cluster.make(spec_dict(steps, [SUCCESS, LATENCY], interval="10s", minRequests=0))
    tick_until(cluster, lambda: cluster.store.status.phase is Phase.PAUSED)
    writes = sum(1 for entry in cluster.store.log if entry.startswith("status:"))
    for _ in range(60):
        asyncio.run(cluster.tick(after=1.0))
    during = sum(1 for entry in cluster.store.log if entry.startswith("status:")) - writes
    assert cluster.store.status.phase is Phase.PAUSED
    assert 4 <= during <= 7, (during, cluster.store.log[-20:])  # a check every 10s over 60s


def test_a_deployment_change_concerns_the_rollouts_acting_on_it_and_only_them() -> None:
    index = TargetIndex()
    rollout = {"spec": {"targetRef": {"kind": "SeldonDeployment", "name": "digits"}},
               "status": {"targetKind": "SeldonDeployment", "targetName": "digits-old"}}
    index.track("ns", "a", targets_of(rollout, "SeldonDeployment"))  # edited to a new target mid-revision
    index.track("ns", "b", {"digits"})
    index.track("other", "c", {"digits"})
    assert index.rollouts_of("ns", "digits") == {"a", "b"}
    assert index.rollouts_of("ns", "digits-old") == {"a"}  # the revision still acts on the one it recorded
    index.track("ns", "a", {"digits"})  # the revision ended: the recorded target no longer concerns it
    assert index.rollouts_of("ns", "digits-old") == set()
    index.forget("ns", "b")
    assert index.rollouts_of("ns", "digits") == {"a"} and index.rollouts_of("other", "digits") == {"c"}
    assert targets_of({"spec": {"targetRef": {"kind": "InferenceService", "name": "x"}}}, "SeldonDeployment") == set()


def test_a_rollout_deleted_without_a_deleted_event_is_forgotten_at_its_first_failed_write() -> None:
    """A watch that re-lists after a gap sends no DELETED for what went meanwhile: the copy must not
    outlive the first write the API server answers with 404."""

    class NotFound(Exception):
        status = 404

    cluster = Cluster.make(canary())
    store = CachedStore(cluster.store, ObjectCache())
    asyncio.run(cached_reconciler(cluster, store).tick(NAMESPACE, NAME))  # cached, at its first weight
    assert store.cache.get(NAMESPACE, NAME) is not None

    async def gone(*_: Any) -> str:
        raise NotFound("modelrollouts.modelrollout.dev not found")

    cluster.store.obj = {}  # deleted on the API server; the cache was not told
    cluster.store.write_status = gone  # type: ignore[method-assign]
    cluster.now += dt.timedelta(seconds=1)
    with pytest.raises(NotFound):  # the tick fails (the operator retries it after its backoff)
        asyncio.run(cached_reconciler(cluster, store).tick(NAMESPACE, NAME))
    assert store.cache.get(NAMESPACE, NAME) is None
    assert asyncio.run(cached_reconciler(cluster, store).tick(NAMESPACE, NAME)) is None  # gone: no more ticks
