"""In-memory stand-ins for the reconciler's dependencies, with faults to inject between writes.

``FakeStore`` keeps one ModelRollout as the API server would (resourceVersion preconditions answer
Conflict); ``FakeSeldon`` keeps one SeldonDeployment and applies changes with the real Seldon v1
transformations; ``Faults`` can kill the "process" (raise ``Crash``) or let someone else write first
(a 409) before any numbered write. Every write is logged in order, so tests can see what happened.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from modelrollout.analysis import QueryOutcome, StaticTemplates
from modelrollout.api import Limits
from modelrollout.backends.seldon_v1 import desired_predictors, model_node, observe_deployment
from modelrollout.reconcile import Conflict, Reconciler
from modelrollout.status import RolloutStatus
from modelrollout.traffic import TargetObservation, TrafficChange, TrafficTarget

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
STABLE_URI = "file:///models/iris/1.0.0"
CANDIDATE_URI = "file:///models/iris/2.0.0"
NAMESPACE, NAME = "models", "iris"


class Crash(Exception):
    """The operator process died here."""


@dataclass
class Faults:
    """Before write number ``at`` (counting every write from 1), crash or conflict."""

    at: int = 0
    kind: str = ""  # "crash" or "conflict"
    count: int = 0
    fired: bool = False

    def before_write(self, store: FakeStore) -> None:
        self.count += 1
        if self.fired or self.count != self.at:
            return
        self.fired = True
        if self.kind == "crash":
            raise Crash(f"crash before write {self.at}")
        if self.kind == "conflict":
            store.bump()  # someone else wrote the object: our resourceVersion is stale


@dataclass
class FakeStore:
    obj: dict[str, Any]
    faults: Faults = field(default_factory=Faults)
    log: list[str] = field(default_factory=list)

    def bump(self) -> None:
        meta = self.obj["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def _write(self, resource_version: str, what: str) -> None:
        self.faults.before_write(self)
        if resource_version != self.obj["metadata"]["resourceVersion"]:
            self.log.append(f"conflict:{what}")
            raise Conflict("the object has been modified")
        self.log.append(what)

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj) if self.obj else None

    async def write_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> str:
        self._write(resource_version, f"status:{status.get('phase')}")
        self.obj["status"] = copy.deepcopy(status)
        self.bump()
        return str(self.obj["metadata"]["resourceVersion"])

    def hold_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> bool:
        return False  # as the API server: a CachedStore in front of it holds

    async def set_finalizers(self, namespace: str, name: str, resource_version: str, finalizers: list[str]) -> str:
        self._write(resource_version, f"finalizers:{','.join(finalizers)}")
        self.obj["metadata"]["finalizers"] = list(finalizers)
        self.bump()
        if not finalizers and self.obj["metadata"].get("deletionTimestamp"):
            self.obj = {}  # the API server deletes it
            return ""
        return str(self.obj["metadata"]["resourceVersion"])

    async def confirm(self, namespace: str, name: str, resource_version: str) -> None:
        self.log.append("confirm")
        if not self.obj or resource_version != self.obj["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")

    async def clear_action(self, namespace: str, name: str, action: str) -> None:
        self.faults.before_write(self)
        annotations = self.obj["metadata"].setdefault("annotations", {})
        if annotations.get("modelrollout.dev/action") == action:
            del annotations["modelrollout.dev/action"]
            self.bump()
        self.log.append(f"clear:{action}")

    @property
    def status(self) -> RolloutStatus:
        return RolloutStatus.from_dict((self.obj or {}).get("status"))


@dataclass
class FakeSeldon:
    """One SeldonDeployment; changes go through the real Seldon v1 transformations."""

    store: FakeStore
    predictors: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "main", "traffic": 100, "graph": {"name": "classifier", "modelUri": STABLE_URI}}])
    state: str = "Available"
    applied: list[tuple[TrafficChange, RolloutStatus]] = field(default_factory=list)

    def sdep(self) -> dict[str, Any]:
        return {"spec": {"predictors": copy.deepcopy(self.predictors)}, "status": {"state": self.state}}

    async def observe(self, namespace: str, target: TrafficTarget) -> TargetObservation:
        return observe_deployment(self.sdep(), target)

    async def apply(self, namespace: str, target: TrafficTarget, change: TrafficChange) -> bool:
        self.store.faults.before_write(self.store)
        desired = desired_predictors(self.predictors, target, change)
        # What the rollout had on record when this write happened: the invariants are judged against it.
        self.applied.append((change, self.store.status))
        self.store.log.append(f"traffic:{change.kind}:{change.candidate_weight}")
        changed = desired != self.predictors
        self.predictors = desired
        return changed

    def candidate(self) -> dict[str, Any] | None:
        return next((p for p in self.predictors if p["name"] != "main"), None)

    def candidate_weight(self) -> int:
        candidate = self.candidate()
        return int(candidate.get("traffic") or 0) if candidate else 0

    def stable_uri(self) -> str:
        return str(model_node(self.predictors[0]).get("modelUri"))


@dataclass
class FakeEvents:
    store: FakeStore
    posted: list[tuple[str, str, str]] = field(default_factory=list)

    async def post(self, obj: Any, type_: str, reason: str, message: str) -> None:
        self.store.faults.before_write(self.store)
        self.posted.append((type_, reason, message))


@dataclass
class FakePrometheus:
    """Answers the builtin queries: a success rate and a p99 latency, or nothing when it is down. As the
    real one, it has no series for a candidate predictor that does not exist (an empty answer)."""

    seldon: FakeSeldon
    success_rate: float = 1.0
    latency_s: float = 0.05
    down: bool = False
    queries: int = 0

    async def query(self, promql: str) -> QueryOutcome:
        self.queries += 1
        if self.down:
            return QueryOutcome.failed("Prometheus at http://prometheus:9090 did not answer within 5s")
        if self.seldon.candidate() is None:
            return QueryOutcome.no_data("query returned an empty result")
        if "histogram_quantile" in promql:
            return QueryOutcome.number(self.latency_s)
        if "code=~" in promql:
            return QueryOutcome.number(self.success_rate)
        return QueryOutcome.number(1000.0)  # request count


def rollout(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": "uid-1", "generation": 1,
                         "resourceVersion": "1", "annotations": {}, "finalizers": []},
            "spec": spec}


@dataclass
class Cluster:
    """A rollout, its SeldonDeployment, Prometheus and a clock, wired to a real Reconciler."""

    store: FakeStore
    seldon: FakeSeldon
    events: FakeEvents
    prometheus: FakePrometheus
    now: dt.datetime = T0

    @classmethod
    def make(cls, spec: dict[str, Any]) -> Cluster:
        store = FakeStore(rollout(spec))
        seldon = FakeSeldon(store)
        return cls(store=store, seldon=seldon, events=FakeEvents(store), prometheus=FakePrometheus(seldon))

    def reconciler(self) -> Reconciler:
        return Reconciler(store=self.store, backends={"SeldonDeployment": self.seldon}, events=self.events,
                          templates=StaticTemplates(), provider_for=lambda _: self.prometheus,
                          limits=Limits(scrape_interval_s=1.0), clock=lambda: self.now)

    async def tick(self, after: float = 1.0) -> float | str | None:
        """One tick; a crash ends it where it happened (as a dead process would) and reads as "crash"."""
        self.now += dt.timedelta(seconds=after)
        try:
            return await self.reconciler().tick(NAMESPACE, NAME)
        except Crash:
            return "crash"
        except Conflict:
            return "conflict"

    def annotate(self, action: str) -> None:
        self.store.obj["metadata"]["annotations"]["modelrollout.dev/action"] = action
        self.store.bump()

    def delete(self) -> None:
        self.store.obj["metadata"]["deletionTimestamp"] = self.now.isoformat()
        self.store.bump()
