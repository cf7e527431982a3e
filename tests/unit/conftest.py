"""Helpers for engine tests: specs, check results, and a small simulated SeldonDeployment.

``Run`` drives ``decide`` tick by tick against ``World`` and persists the status through
``to_dict``/``from_dict`` between ticks, the way the operator keeps it on the object.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from modelrollout.api import Limits, Metric, RolloutSpec
from modelrollout.backends.seldon_v1 import readiness_of
from modelrollout.engine import Observations, Plan, TargetObservation, TrafficChange, decide, metrics_due
from modelrollout.status import CheckRecord, ConditionType, RolloutStatus, Verdict

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
STABLE_URI = "file:///models/iris/1.0.0"
CANDIDATE_URI = "file:///models/iris/2.0.0"


def spec_dict(steps: list[dict[str, Any]] | None = None, metrics: list[dict[str, Any]] | None = None,
              version: str = "2.0.0", model_uri: str = CANDIDATE_URI, progress_deadline: str | None = None,
              **analysis: Any) -> dict[str, Any]:
    extra = {"progressDeadline": progress_deadline} if progress_deadline else {}
    return {
        **extra,
        "targetRef": {"kind": "SeldonDeployment", "name": "iris"},
        "stablePredictor": "main",
        "candidate": {"modelUri": model_uri, "version": version},
        "strategy": {"canary": {"steps": steps if steps is not None else [{"setWeight": 10}, {"setWeight": 50}]}},
        "analysis": {"interval": "30s", "failureLimit": 2, "inconclusiveLimit": 3, "minRequests": 0,
                     "metrics": metrics if metrics is not None else [], **analysis},
    }


# A 1s scrape (as on the local cluster) keeps the default window equal to the interval in these tests.
LIMITS = Limits(scrape_interval_s=1.0)


def make_spec(steps: list[dict[str, Any]] | None = None, metrics: list[dict[str, Any]] | None = None,
              **kwargs: Any) -> RolloutSpec:
    return RolloutSpec.parse(spec_dict(steps, metrics, **kwargs), LIMITS)


SUCCESS = {"name": "success-rate", "template": "request-success-rate", "min": 0.99}
LATENCY = {"name": "latency-p99", "template": "request-duration-p99", "max": 0.25}


def check(metric: str, verdict: Verdict, value: float | None = None, message: str = "") -> CheckRecord:
    if value is None and verdict is Verdict.PASS:
        value = 1.0
    return CheckRecord(metric=metric, verdict=verdict, value=value,
                       message=message or f"{metric} {verdict.lower()} over 30s", window="30s")


def checks_for(metrics: tuple[Metric, ...], verdict: Verdict) -> tuple[CheckRecord, ...]:
    return tuple(check(m.name, verdict) for m in metrics)


@dataclass
class World:
    """A SeldonDeployment as far as the engine can see it; applies TrafficChanges like the backend."""

    exists: bool = True
    stable_present: bool = True
    stable_uri: str = STABLE_URI
    candidate_present: bool = False
    candidate_weight: int = 0
    candidate_mirror: int = 0  # a shadow: the share of live requests copied to it (its weight is 0)
    candidate_uri: str = ""
    state: str = ""  # Seldon's status.state as the deployment's controller reports it
    candidate_owned: bool = True  # the candidate predictor carries this rollout's UID
    foreign_owner: str = ""  # another rollout's candidate on the same stable predictor
    applied: list[TrafficChange] = field(default_factory=list)

    def observe(self) -> TargetObservation:
        return TargetObservation(exists=self.exists, stable_present=self.exists and self.stable_present,
                                 stable_model_uri=self.stable_uri if self.exists else "",
                                 stable_version=self.stable_uri.rsplit("/", 1)[-1] if self.exists else "",
                                 candidate_present=self.exists and self.candidate_present,
                                 candidate_weight=self.candidate_weight if self.exists else 0,
                                 candidate_mirror=self.candidate_mirror if self.exists else 0,
                                 candidate_model_uri=self.candidate_uri if self.candidate_present else "",
                                 candidate_owned=self.candidate_owned or not self.candidate_present,
                                 foreign_owner=self.foreign_owner if self.exists else "",
                                 readiness=readiness_of({"state": self.state if self.exists else ""}),
                                 readiness_detail=self.state if self.exists else "")

    def apply(self, change: TrafficChange | None, spec: RolloutSpec | str) -> None:
        """Apply a change; ``spec`` is the rollout's spec or, when it has none, the candidate's model URI."""
        if change is None or not (self.exists and self.stable_present):
            return
        candidate_uri = spec if isinstance(spec, str) else spec.candidate.model_uri
        self.applied.append(change)
        if change.kind == "weight":
            self.candidate_present, self.candidate_weight = True, change.candidate_weight
            self.candidate_mirror = change.mirror_percent
            self.candidate_uri = candidate_uri
        elif change.kind == "adopt":
            self.stable_uri = candidate_uri
        elif change.kind == "promote":
            assert self.stable_uri == candidate_uri, "traffic moved before stable took the model"
            self.candidate_present, self.candidate_weight, self.candidate_uri = False, 0, ""
            self.candidate_mirror = 0
        else:
            if change.restore_model_uri and self.stable_uri == candidate_uri:
                self.stable_uri = change.restore_model_uri
            self.candidate_present, self.candidate_weight, self.candidate_uri = False, 0, ""
            self.candidate_mirror = 0


class Run:
    """One ModelRollout driven through decide; the world follows each Plan unless told otherwise."""

    def __init__(self, spec: RolloutSpec, world: World | None = None, generation: int = 1) -> None:
        self.spec: RolloutSpec | Any = spec
        self.world = world or World()
        self.generation = generation
        self.status = RolloutStatus()
        self.now = T0
        self.plans: list[Plan] = []

    def tick(self, *, after: float = 0.0, checks: tuple[CheckRecord, ...] | None = None,
             action: str | None = None, apply: bool = True, deleting: bool = False) -> Plan:
        self.now += dt.timedelta(seconds=after)
        obs = Observations(target=self.world.observe(), checks=checks, action=action, deleting=deleting)
        plan = decide(self.spec, self.generation, self.status, obs, self.now)
        if apply:
            self.world.apply(plan.traffic, plan.status.candidate_model_uri)
        self.status = RolloutStatus.from_dict(plan.status.to_dict())  # persisted on the object
        self.plans.append(plan)
        return plan

    def due(self) -> tuple[Metric, ...]:
        assert isinstance(self.spec, RolloutSpec)
        return metrics_due(self.spec, self.status, self.now)

    def analysed_tick(self, verdict: Verdict, *, after: float = 0.0, action: str | None = None) -> Plan:
        """A tick in which the handler runs whatever is due and every metric gets ``verdict``."""
        self.now += dt.timedelta(seconds=after)
        due = self.due()
        return self.tick(checks=checks_for(due, verdict) if due else None, action=action)

    def until(self, predicate: Any, limit: int = 50, after: float = 1.0) -> Plan:
        for _ in range(limit):
            plan = self.tick(after=after)
            if predicate(plan):
                return plan
        raise AssertionError(f"condition not reached; status: {self.status}")


def reasons(plan: Plan) -> list[str]:
    return [e.reason for e in plan.events]


def condition(plan: Plan, type_: ConditionType) -> tuple[str, str]:
    found = plan.status.condition(type_)
    assert found is not None, f"no {type_} condition"
    return found.status, found.reason


LONG_PAUSE: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]


def watching(failure_limit: int = 2, inconclusive_limit: int = 3) -> Run:
    """A rollout whose candidate serves 10% during a long pause, with two metrics watching it."""
    run = Run(make_spec(steps=LONG_PAUSE, metrics=[SUCCESS, LATENCY], failureLimit=failure_limit,
                        inconclusiveLimit=inconclusive_limit))
    run.tick()
    run.tick(after=1)
    assert run.world.candidate_weight == 10
    return run


# An analysis step at 20% with two metrics defined and one judged by the step (steps and gate tests).
ANALYSIS_STEPS: list[dict[str, Any]] = [
    {"setWeight": 20}, {"analysis": {"metrics": ["success-rate"]}}, {"setWeight": 100}]


def at_analysis_step() -> Run:
    run = Run(make_spec(steps=ANALYSIS_STEPS, metrics=[SUCCESS, LATENCY]))
    run.tick()
    plan = run.tick(after=1)
    assert plan.status.step_index == 1
    return run
