"""The Kopf wiring that is not the tick: liveness follows the scheduler's loop."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import kopf
import pytest
from modelrollout import handlers
from modelrollout.scheduler import TickScheduler


@pytest.mark.asyncio
async def test_liveness_fails_once_the_scheduler_loop_has_stopped() -> None:
    async def tick(namespace: str, name: str) -> float | None:
        return None

    stop = asyncio.Event()
    runtime = handlers.Runtime(reconciler=cast(Any, None), scheduler=TickScheduler(tick))
    runtime.loop_task = asyncio.create_task(runtime.scheduler.run(stop))
    memo = kopf.Memo(runtime=runtime)
    assert handlers.tick_loop_alive(memo=memo) == "running"
    stop.set()
    await runtime.loop_task
    with pytest.raises(RuntimeError, match="not running"):
        handlers.tick_loop_alive(memo=memo)


def test_handlers_refuse_to_run_before_start_up() -> None:
    with pytest.raises(RuntimeError, match="has not started"):
        handlers.tick_loop_alive(memo=kopf.Memo())


@pytest.mark.asyncio
async def test_the_watches_fill_the_caches_and_a_deployment_change_wakes_its_rollouts() -> None:
    ticked: list[tuple[str, str]] = []

    async def tick(namespace: str, name: str) -> float | None:
        ticked.append((namespace, name))
        return None

    runtime = handlers.Runtime(reconciler=cast(Any, None), scheduler=TickScheduler(tick))
    memo = kopf.Memo(runtime=runtime)

    def rollout(name: str, target: str) -> dict[str, Any]:
        return {"metadata": {"namespace": "ns", "name": name, "generation": 1, "resourceVersion": "5"},
                "spec": {"targetRef": {"kind": "SeldonDeployment", "name": target}}}

    for name, target in (("digits-rollout", "digits"), ("iris-rollout", "iris")):
        obj = rollout(name, target)
        await handlers.watch(event=cast(Any, {"type": None, "object": obj}), body=kopf.Body(obj), namespace="ns",
                             name=name, memo=memo)
    assert runtime.rollouts.get("ns", "digits-rollout") is not None and len(runtime.rollouts) == 2
    stop = asyncio.Event()
    loop = asyncio.create_task(runtime.scheduler.run(stop))
    await asyncio.wait_for(_until(lambda: len(ticked) == 2), 3)  # both listed: both tick once, then idle
    sdep = {"metadata": {"namespace": "ns", "name": "digits", "resourceVersion": "9"}, "status": {"state": "Available"}}
    await handlers.watch_deployment(event=cast(Any, {"type": "MODIFIED", "object": sdep}), namespace="ns",
                                    name="digits", memo=memo)
    await asyncio.wait_for(_until(lambda: len(ticked) == 3), 3)
    assert ticked[-1] == ("ns", "digits-rollout")
    assert runtime.deployments.get("ns", "digits") == sdep
    await handlers.watch_deployment(event=cast(Any, {"type": "DELETED", "object": sdep}), namespace="ns",
                                    name="digits", memo=memo)
    assert runtime.deployments.get("ns", "digits") is None
    stop.set()
    await loop
    assert ticked.count(("ns", "iris-rollout")) == 1  # another deployment's change is none of its business


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.005)


@pytest.mark.asyncio
async def test_analysis_templates_come_from_the_watch_and_only_an_undelivered_one_is_read() -> None:
    from modelrollout.cache import ObjectCache

    class Api:
        reads: list[str] = []

        def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                         **_: Any) -> dict[str, Any]:
            self.reads.append(name)
            return {"spec": {"query": "sum(rate(created_just_now[1m]))"}}

    cache = ObjectCache()
    cache.put({"metadata": {"namespace": "ns", "name": "accuracy", "resourceVersion": "3"},
               "spec": {"query": "sum(rate(correct[{{interval}}]))"}})
    templates = handlers.KubernetesTemplates(cast(Any, Api()), 5.0, cache)
    watched = await templates.get("ns", "accuracy")
    assert watched is not None and watched.value == "sum(rate(correct[{{interval}}]))"
    assert Api.reads == []  # no request for a template the watch delivered
    fresh = await templates.get("ns", "brand-new")
    assert fresh is not None and fresh.value == "sum(rate(created_just_now[1m]))" and Api.reads == ["brand-new"]


def test_no_handler_needs_kopfs_diffbase_so_building_none_is_safe() -> None:
    """UnusedDiffBase holds only while Kopf has no create/update/resume/daemon/timer handler to diff for."""
    registry = kopf.get_default_registry()
    assert registry._watching.get_all_handlers(), "the watch handlers are registered"
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()


@pytest.mark.asyncio
async def test_a_deleted_rollout_is_forgotten_by_the_cache_the_scheduler_and_the_reconciler() -> None:
    forgotten: list[tuple[str, str]] = []

    class Reconciler:
        def forget(self, namespace: str, name: str) -> None:
            forgotten.append((namespace, name))

    async def tick(namespace: str, name: str) -> float | None:
        return None

    runtime = handlers.Runtime(reconciler=cast(Any, Reconciler()), scheduler=TickScheduler(tick))
    memo = kopf.Memo(runtime=runtime)
    obj = {"metadata": {"namespace": "ns", "name": "digits-rollout", "generation": 1, "resourceVersion": "5"},
           "spec": {}}
    await handlers.watch(event=cast(Any, {"type": None, "object": obj}), body=kopf.Body(obj), namespace="ns",
                         name="digits-rollout", memo=memo)
    assert runtime.rollouts.get("ns", "digits-rollout") is not None and not forgotten
    await handlers.watch(event=cast(Any, {"type": "DELETED", "object": obj}), body=kopf.Body(obj), namespace="ns",
                         name="digits-rollout", memo=memo)
    assert runtime.rollouts.get("ns", "digits-rollout") is None
    assert forgotten == [("ns", "digits-rollout")]  # its status heartbeat goes with it
