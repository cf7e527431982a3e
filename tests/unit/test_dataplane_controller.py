"""The local controller as Seldon Core v1.18's reconcile behaves, on a fake clock.

A write takes effect after the reconcile delay (status has no observedGeneration); new weights reach the
VirtualService only once every predictor is ready; a pod-template change rolls a predictor's servers and
a weight change does not; Failed only once a predictor's rollout exceeded its progress deadline with no
available replica.
"""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from localcluster.dataplane.controller import (
    RECONCILE_DELAY_ANNOTATION,
    Controller,
    PredictorView,
    Rollout,
    deployment_state,
    stalled,
    track,
)
from localcluster.dataplane.routing import ServerSpec
from localcluster.dataplane.supervisor import ServerProcess

NS = "models"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSupervisor:
    """Keeps ServerProcess records as the real one does (a new template replaces a replica), runs nothing."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.servers: dict[tuple[str, str, str, int], ServerProcess] = {}
        self.replaced: list[tuple[str, str, str, int]] = []

    async def reconcile(self, desired: list[ServerSpec]) -> None:
        wanted = {spec.key: spec for spec in desired}
        for key in [k for k in self.servers if k not in wanted]:
            del self.servers[key]
        for key, spec in wanted.items():
            if key in self.servers and self.servers[key].spec != spec:
                self.replaced.append(key)
                del self.servers[key]
            self.servers.setdefault(key, ServerProcess(spec, 1, 2, 3))

    def ready_endpoints(self, namespace: str, deployment: str, predictor: str) -> list[ServerProcess]:
        return [s for k, s in self.servers.items() if k[:3] == (namespace, deployment, predictor) and s.ready]

    def make_ready(self, predictor: str) -> None:
        for key, server in self.servers.items():
            if key[2] == predictor:
                server.ready, server.ready_at = True, self.clock()


class FakeIngress:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Any] = {}
        self.forgotten: list[tuple[str, str]] = []

    def forget(self, namespace: str, deployment: str) -> None:
        self.forgotten.append((namespace, deployment))
        self.routes.pop((namespace, deployment), None)


class FakeApi:
    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []

    def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> None:
        self.patches.append(args[5]["status"])


def sdep(generation: int, *predictors: dict[str, Any], **annotations: str) -> dict[str, Any]:
    return {"metadata": {"name": "digits", "namespace": NS, "generation": generation, "annotations": annotations},
            "spec": {"predictors": [copy.deepcopy(p) for p in predictors]}}


def predictor(name: str, traffic: int, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"name": name, "traffic": traffic, "replicas": 1, "annotations": {"version": version},
            "graph": {"name": "classifier", "modelUri": f"file:///models/digits/{version}"}, **extra}


def controller(tmp_path: Path, delay: float = 1.0) -> tuple[Controller, FakeSupervisor, FakeIngress, Clock]:
    clock = Clock()
    supervisor, ingress = FakeSupervisor(clock), FakeIngress()
    made = Controller(FakeApi(), supervisor, ingress, tmp_path, tmp_path / "model-servers.json",  # type: ignore[arg-type]
                      "http://127.0.0.1:8080", reconcile_delay_s=delay, clock=clock)
    return made, supervisor, ingress, clock


def step(made: Controller, *events: tuple[str, dict[str, Any]]) -> None:
    for kind, obj in events:
        made.receive(kind, obj)
    made.apply_due()
    asyncio.run(made.reconcile())


def weights(ingress: FakeIngress) -> dict[str, int] | None:
    route = ingress.routes.get((NS, "digits"))
    return None if route is None else {p.name: p.traffic for p in route.predictors}


def available(made: Controller, supervisor: FakeSupervisor, generation: int, *predictors: dict[str, Any]) -> None:
    step(made, ("SYNC", {"items": [sdep(generation, *predictors)]}))
    for p in predictors:
        supervisor.make_ready(p["name"])
    made.evaluate()
    assert made.states[(NS, "digits")][0] == "Available"


def test_new_weights_reach_the_virtual_service_only_once_every_predictor_is_ready(tmp_path: Path) -> None:
    made, supervisor, ingress, clock = controller(tmp_path, delay=0)
    available(made, supervisor, 1, predictor("main", 100))
    assert weights(ingress) == {"main": 100}
    step(made, ("MODIFIED", sdep(2, predictor("main", 90), predictor("main-candidate", 10, "2.0.0"))))
    assert made.states[(NS, "digits")][0] == "Creating"
    assert weights(ingress) == {"main": 100}  # the candidate is not ready: the old VirtualService stays
    clock.now += 5
    supervisor.make_ready("main-candidate")
    made.evaluate()
    assert weights(ingress) == {"main": 90, "main-candidate": 10}
    assert made.states[(NS, "digits")][0] == "Available"


def test_a_write_takes_effect_after_the_reconcile_delay_and_status_lags_it(tmp_path: Path) -> None:
    made, supervisor, _, clock = controller(tmp_path, delay=2.0)
    available(made, supervisor, 1, predictor("main", 100))
    step(made, ("MODIFIED", sdep(2, predictor("main", 100, "2.0.0"))))  # a new model for main
    assert made.deployments[(NS, "digits")]["metadata"]["generation"] == 1  # not acted on yet
    assert not supervisor.replaced and made.states[(NS, "digits")][0] == "Available"  # the old spec's state
    clock.now += 1.0
    step(made)
    assert not supervisor.replaced
    clock.now += 1.5
    step(made)
    assert supervisor.replaced == [(NS, "digits", "main", 0)]
    assert made.states[(NS, "digits")][0] == "Creating"
    # A status-only event (same generation) is taken at once; an annotation sets a deployment's own delay.
    made.receive("MODIFIED", {**sdep(2, predictor("main", 100, "2.0.0")), "status": {"state": "Creating"}})
    assert made.deployments[(NS, "digits")].get("status") == {"state": "Creating"}
    made.receive("MODIFIED", sdep(3, predictor("main", 100, "3.0.0"), **{RECONCILE_DELAY_ANNOTATION: "10"}))
    assert made.pending[(NS, "digits")][0] == clock.now + 10


def test_an_annotation_change_restarts_the_predictor_and_a_weight_change_does_not(tmp_path: Path) -> None:
    made, supervisor, _, _ = controller(tmp_path, delay=0)
    main, other = predictor("main", 50), predictor("other", 50)
    available(made, supervisor, 1, main, other)
    step(made, ("MODIFIED", sdep(2, {**main, "traffic": 20}, {**other, "traffic": 80, "replicas": 1})))
    assert supervisor.replaced == []
    annotated = {**main, "annotations": {**main["annotations"], "team": "x"}}
    step(made, ("MODIFIED", sdep(3, annotated, other)))
    assert supervisor.replaced == [(NS, "digits", "main", 0)]
    specs = {**other, "componentSpecs": [{"spec": {"containers": [{"name": "classifier", "image": "m:2"}]}}]}
    step(made, ("MODIFIED", sdep(4, annotated, specs)))
    assert supervisor.replaced[-1] == (NS, "digits", "other", 0)


def test_failed_only_after_the_progress_deadline(tmp_path: Path) -> None:
    made, supervisor, ingress, clock = controller(tmp_path, delay=0)
    available(made, supervisor, 1, predictor("main", 100))
    broken = predictor("main-candidate", 10, "9.9.9", progressDeadlineSeconds=30)
    step(made, ("MODIFIED", sdep(2, predictor("main", 90), broken)))  # its server never becomes ready
    for _ in range(3):
        clock.now += 10
        made.evaluate()
        assert made.states[(NS, "digits")][0] == "Creating"  # crashing is not Failed, yet
    clock.now += 1
    made.evaluate()
    state, description, _ = made.states[(NS, "digits")]
    assert state == "Failed" and "main-candidate" in description
    assert weights(ingress) == {"main": 100}


def test_the_default_progress_deadline_is_ten_minutes(tmp_path: Path) -> None:
    made, _, _, clock = controller(tmp_path, delay=0)
    step(made, ("SYNC", {"items": [sdep(1, predictor("main", 100))]}))
    clock.now += 599
    made.evaluate()
    assert made.states[(NS, "digits")][0] == "Creating"
    clock.now += 2
    made.evaluate()
    assert made.states[(NS, "digits")][0] == "Failed"


def test_a_crash_after_a_completed_rollout_is_creating_never_failed() -> None:
    view = PredictorView("main", 1, 1, 1, 5.0)
    rollout = track(None, "t1", view, 0.0)
    assert rollout.complete
    crashed = PredictorView("main", 1, 0, 0, 5.0)
    rollout = track(rollout, "t1", crashed, 10_000.0)
    assert not stalled(crashed, rollout, 600, 10_000.0)
    assert deployment_state([(crashed, rollout, 600)], [], 10_000.0)[0] == "Creating"


def test_a_stuck_rolling_update_while_the_old_pod_serves_is_not_failed() -> None:
    # The new template never gets ready, but the previous one still serves: the Deployment stays Available.
    view = PredictorView("main", 1, 0, 1, 0.0)
    rollout = Rollout("t2", 1, started=0.0, progress=0.0)
    assert not stalled(view, rollout, 600, 10_000.0)
    assert deployment_state([(view, rollout, 600)], [], 10_000.0)[0] == "Creating"


def test_status_is_written_with_the_state_and_targets_per_namespace(tmp_path: Path) -> None:
    made, supervisor, _, _ = controller(tmp_path, delay=0)
    available(made, supervisor, 1, predictor("main", 100))
    asyncio.run(made._write_status((NS, "digits"), made.deployments[(NS, "digits")]))
    api = made.api
    assert isinstance(api, FakeApi) and api.patches[-1]["state"] == "Available"
    servers, executors = made.target_groups()
    assert executors == [{"targets": ["127.0.0.1:8080"], "labels": {
        "__meta_kubernetes_namespace": NS, "__metrics_path__": f"/metrics/{NS}",
        "__meta_kubernetes_pod_container_name": "seldon-container-engine"}}]
    assert servers[0]["labels"]["__meta_kubernetes_namespace"] == NS  # type: ignore[index]
    step(made, ("DELETED", sdep(1, predictor("main", 100))))
    assert made.target_groups() == ([], [])
