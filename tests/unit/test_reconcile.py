"""The whole tick pipeline (read, observe, measure, decide, write) against fakes, in milliseconds.

The write order is what these tests pin: the decision goes into status before traffic moves, so a crash
or a conflict between any two writes is completed by the next tick and never undoes a rollback or turns
a finished promotion into a failure.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from modelrollout.analysis import QueryOutcome, StaticTemplates
from modelrollout.api import Limits, Phase
from modelrollout.reconcile import FINALIZER, Reconciler
from modelrollout.status import RolloutStatus, Verdict

from tests.unit.conftest import spec_dict
from tests.unit.fakes import CANDIDATE_URI, NAME, NAMESPACE, STABLE_URI, Cluster, Faults

SUCCESS = {"name": "success-rate", "template": "request-success-rate", "min": 0.99}
LATENCY = {"name": "latency-p99", "template": "request-duration-p99", "max": 0.25}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def canary(**analysis: Any) -> dict[str, Any]:
    steps = [{"setWeight": 20}, {"pause": {"duration": "5s"}}, {"setWeight": 60}, {"pause": {"duration": "5s"}}]
    return spec_dict(steps, [SUCCESS, LATENCY], interval="10s", minRequests=0, **analysis)


def tick_until(cluster: Cluster, predicate: Any, limit: int = 400) -> None:
    for _ in range(limit):
        if predicate():
            return
        run(cluster.tick())
    raise AssertionError(f"not reached; status {cluster.store.status}, log {cluster.store.log[-10:]}")


def fresh_revision_weights(cluster: Cluster, revision: int) -> list[int]:
    return [c.candidate_weight for c, s in cluster.seldon.applied if c.kind == "weight" and s.revision == revision]


# --------------------------------------------------------------------------------------------------
# The plain pipeline


def test_a_healthy_candidate_is_promoted_through_the_whole_pipeline() -> None:
    cluster = Cluster.make(canary())
    tick_until(cluster, lambda: cluster.store.status.phase is Phase.SUCCEEDED)
    kinds = [c.kind for c, _ in cluster.seldon.applied]
    assert kinds == ["weight", "weight", "adopt", "promote"]
    assert cluster.seldon.stable_uri() == CANDIDATE_URI and cluster.seldon.candidate() is None
    assert FINALIZER not in cluster.store.obj["metadata"]["finalizers"]  # released once it ended
    log = cluster.store.log
    assert log.index("finalizers:" + FINALIZER) < log.index("traffic:weight:20")
    assert cluster.prometheus.queries > 0


def test_each_traffic_write_follows_the_status_write_that_decided_it() -> None:
    cluster = Cluster.make(canary())
    cluster.prometheus.success_rate = 0.5
    tick_until(cluster, lambda: cluster.store.status.phase is Phase.ROLLED_BACK)
    run(cluster.tick())
    for change, on_record in cluster.seldon.applied:
        if change.kind == "rollback":
            assert on_record.phase is Phase.ROLLED_BACK  # on record before the candidate was removed
        if change.kind == "weight":
            assert on_record.phase in (Phase.PROGRESSING, Phase.PAUSED)


# --------------------------------------------------------------------------------------------------
# A crash or a 409 between every pair of writes


def _rollback_scenario(faults: Faults) -> Cluster:
    cluster = Cluster.make(canary(failureLimit=1))
    tick_until(cluster, lambda: cluster.seldon.candidate_weight() == 20 and cluster.store.status.serving_since)
    cluster.prometheus.success_rate = 0.5  # the candidate goes bad
    cluster.store.faults = faults
    faults.count = 0
    for _ in range(60):
        run(cluster.tick())
    return cluster


def _writes_in(scenario: Any) -> int:
    probe = Faults()
    scenario(probe)
    return probe.count


@pytest.mark.parametrize("kind", ["crash", "conflict"])
def test_a_fault_between_any_two_writes_of_a_rollback_never_brings_the_candidate_back(kind: str) -> None:
    writes = _writes_in(_rollback_scenario)
    assert writes >= 4  # finalizer, status, traffic, events, finalizer ...
    for at in range(1, writes + 1):
        cluster = _rollback_scenario(Faults(at=at, kind=kind))
        status = cluster.store.status
        assert status.phase is Phase.ROLLED_BACK, (at, cluster.store.log)
        assert cluster.seldon.candidate() is None, (at, cluster.store.log)
        rolled_back_at = next(i for i, (c, _) in enumerate(cluster.seldon.applied) if c.kind == "rollback")
        later = [c for c, _ in cluster.seldon.applied[rolled_back_at:] if c.kind == "weight"]
        assert later == [], (at, cluster.store.log)  # never re-deployed after the rollback
        assert FINALIZER not in cluster.store.obj["metadata"]["finalizers"]


def _promotion_scenario(faults: Faults) -> Cluster:
    cluster = Cluster.make(canary())
    tick_until(cluster, lambda: cluster.seldon.candidate_weight() == 60 and cluster.store.status.step_index >= 3)
    cluster.store.faults = faults
    faults.count = 0
    for _ in range(80):
        run(cluster.tick())
    return cluster


@pytest.mark.parametrize("kind", ["crash", "conflict"])
def test_a_fault_between_any_two_writes_of_a_promotion_still_ends_succeeded(kind: str) -> None:
    writes = _writes_in(_promotion_scenario)
    assert writes >= 4
    for at in range(1, writes + 1):
        cluster = _promotion_scenario(Faults(at=at, kind=kind))
        status = cluster.store.status
        assert status.phase is Phase.SUCCEEDED, (at, status.message, cluster.store.log)
        assert cluster.seldon.stable_uri() == CANDIDATE_URI and cluster.seldon.candidate() is None
        kinds = [c.kind for c, _ in cluster.seldon.applied]
        assert kinds.index("adopt") < kinds.index("promote")  # stable took the model before traffic moved


def test_deleting_a_rollout_mid_canary_removes_its_candidate_before_it_goes() -> None:
    cluster = Cluster.make(canary())
    tick_until(cluster, lambda: cluster.seldon.candidate_weight() == 20)
    assert FINALIZER in cluster.store.obj["metadata"]["finalizers"]
    cluster.delete()
    tick_until(cluster, lambda: not cluster.store.obj, limit=10)
    assert cluster.seldon.candidate() is None
    assert cluster.seldon.predictors[0]["traffic"] == 100


def test_a_prometheus_that_hangs_makes_checks_inconclusive_within_the_deadline() -> None:
    cluster = Cluster.make(canary(inconclusiveLimit=2))

    class Hanging:
        async def query(self, promql: str) -> Any:
            await asyncio.sleep(3600)

    reconciler = cluster.reconciler()
    reconciler.provider_for = lambda _: Hanging()  # type: ignore[assignment,return-value]
    reconciler.analysis_deadline_s = 0.05
    for _ in range(60):
        cluster.now += dt.timedelta(seconds=1)
        run(reconciler.tick("models", "iris"))
        if cluster.store.status.phase is Phase.ROLLED_BACK:
            break
    assert cluster.store.status.phase is Phase.ROLLED_BACK
    assert "did not finish within" in cluster.store.status.message


# --------------------------------------------------------------------------------------------------
# Random runs with crashes, conflicts, outages, actions and deletion


class RolloutMachine(RuleBasedStateMachine):
    """Drives the real reconciler against the fakes and checks the invariants after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.cluster = Cluster.make(canary(failureLimit=2, inconclusiveLimit=3))
        self.gone = False

    @rule(after=st.integers(1, 12), fault=st.sampled_from(["", "", "", "crash", "conflict"]), at=st.integers(1, 6))
    def tick(self, after: int, fault: str, at: int) -> None:
        if self.gone:
            return
        self.cluster.store.faults = Faults(at=at, kind=fault) if fault else Faults()
        run(self.cluster.tick(after=after))
        self.gone = not self.cluster.store.obj

    @rule(health=st.sampled_from(["good", "good", "errors", "slow", "down"]))
    def prometheus(self, health: str) -> None:
        p = self.cluster.prometheus
        p.success_rate, p.latency_s, p.down = 1.0, 0.05, False
        if health == "errors":
            p.success_rate = 0.5
        elif health == "slow":
            p.latency_s = 2.0
        elif health == "down":
            p.down = True

    @rule(action=st.sampled_from(["pause", "resume", "promote", "abort"]))
    def act(self, action: str) -> None:
        if not self.gone:
            self.cluster.annotate(action)

    @rule(state=st.sampled_from(["Available", "Available", "Creating"]))
    def deployment_state(self, state: str) -> None:
        self.cluster.seldon.state = state

    @rule()
    def delete(self) -> None:
        if not self.gone and not self.cluster.store.obj["metadata"].get("deletionTimestamp"):
            self.cluster.delete()

    @invariant()
    def weight_rises_only_when_earned(self) -> None:
        previous = 0
        for change, on_record in self.cluster.seldon.applied:
            if change.kind == "weight" and change.candidate_weight > previous > 0:
                assert _earned(on_record, previous), (previous, change, on_record.analysis)
            if change.kind == "weight":
                previous = change.candidate_weight
            elif change.kind in ("rollback", "promote"):
                previous = 0

    @invariant()
    def a_rollback_is_never_undone(self) -> None:
        rolled_back: set[int] = set()
        for change, on_record in self.cluster.seldon.applied:
            if change.kind == "rollback":
                rolled_back.add(on_record.revision)
            else:  # nothing of a revision is deployed again once its candidate was taken away
                assert on_record.revision not in rolled_back, (change, on_record)

    @invariant()
    def promotion_is_ordered_and_earned(self) -> None:
        adopted = False
        for change, on_record in self.cluster.seldon.applied:
            if change.kind == "adopt":
                adopted = True
                assert _earned(on_record, on_record.candidate_weight), (
                    on_record.weight_since, [(r.metric, r.verdict, r.weight, r.window_start, r.at)
                                             for r in on_record.analysis.last_checks])
            if change.kind == "promote":
                assert adopted
        status = self.cluster.store.status
        if status.phase is Phase.SUCCEEDED:
            assert self.cluster.seldon.stable_uri() == CANDIDATE_URI and self.cluster.seldon.candidate() is None
        if status.phase in (Phase.ROLLED_BACK, Phase.ABORTED) and self.cluster.store.obj:
            assert self.cluster.seldon.stable_uri() == STABLE_URI
            assert not any(r.reason == "CandidateIsStable" for r in status.history)


def _earned(status: RolloutStatus, weight: int) -> bool:
    """Every metric's latest record on record is a Pass at ``weight`` over a window that started once the
    candidate served that weight (written out here, independent of the engine's gate)."""
    names = {m["name"] for m in (SUCCESS, LATENCY)}
    records = {r.metric: r for r in status.analysis.last_checks}
    return names <= set(records) and all(
        records[n].verdict is Verdict.PASS and records[n].weight == weight and status.weight_since is not None
        and records[n].window_start is not None and records[n].window_start >= status.weight_since for n in names)


RolloutMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
TestRolloutMachine = RolloutMachine.TestCase


def test_a_write_the_target_refuses_for_good_fails_the_rollout_with_its_message() -> None:
    from modelrollout.traffic import TrafficRefused

    cluster = Cluster.make(canary())
    real_apply = cluster.seldon.apply

    async def refusing(namespace: str, target: Any, change: Any) -> bool:
        if change.kind == "weight" and change.candidate_weight == 60:
            raise TrafficRefused('admission webhook "v1.vseldondeployment.kb.io" denied the request: '
                                 "Found duplicate service name")
        return await real_apply(namespace, target, change)

    cluster.seldon.apply = refusing  # type: ignore[method-assign]
    tick_until(cluster, lambda: cluster.store.status.phase is Phase.FAILED)
    status = cluster.store.status
    assert "Found duplicate service name" in status.message
    assert any(c.reason == "TrafficRefused" for c in status.conditions)
    assert any(reason == "Failed" for _, reason, _ in cluster.events.posted)
    tick_until(cluster, lambda: cluster.seldon.candidate() is None, limit=5)  # the candidate at 20% goes
    assert cluster.seldon.predictors[0]["traffic"] == 100


# --------------------------------------------------------------------------------------------------
# The analysis measures the names the revision recorded, never an edit of them


class FailingCandidate:
    """Predictor main-candidate fails half its requests; every other predictor none."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    async def query(self, promql: str) -> QueryOutcome:
        if self.cluster.seldon.candidate() is None:
            return QueryOutcome.no_data("empty")
        if "code=~" in promql:
            return QueryOutcome.number(0.5 if 'predictor_name="main-candidate"' in promql else 1.0)
        return QueryOutcome.number(1000.0)

    async def query_by(self, promql: str, label: str) -> QueryOutcome:
        return QueryOutcome.no_data("empty")


@pytest.mark.parametrize("swap", [False, True], ids=["no edit", "names swapped mid-rollout"])
def test_an_edit_swapping_stable_and_candidate_names_never_turns_a_failing_candidate_into_a_pass(swap: bool) -> None:
    success = {"name": "success-rate", "template": "request-success-rate", "min": 0.99}
    cluster = Cluster.make(spec_dict([{"setWeight": 10}, {"pause": {"duration": "20s"}}, {"setWeight": 100}],
                                     [success], interval="10s", failureLimit=3))
    provider = FailingCandidate(cluster)
    reconciler = Reconciler(store=cluster.store, backends={"SeldonDeployment": cluster.seldon}, events=cluster.events,
                            templates=StaticTemplates(), provider_for=lambda _: provider,
                            limits=Limits(scrape_interval_s=1.0), clock=lambda: cluster.now)

    def tick() -> None:
        cluster.now += dt.timedelta(seconds=1)
        asyncio.run(reconciler.tick(NAMESPACE, NAME))

    for _ in range(12):
        tick()
    assert cluster.seldon.candidate_weight() == 10
    assert any(r.verdict is Verdict.FAIL for r in cluster.store.status.analysis.last_checks)
    if swap:  # an edit the CRD admits; the revision keeps its names and refuses it
        spec = cluster.store.obj["spec"]
        spec["stablePredictor"], spec["candidate"]["predictorName"] = "main-candidate", "main"
        cluster.store.bump()
    for _ in range(120):
        tick()
        if cluster.store.status.phase is not None and cluster.store.status.phase.terminal:
            break
    assert cluster.store.status.phase is Phase.ROLLED_BACK, cluster.store.status.message
    assert cluster.seldon.stable_uri() == STABLE_URI


def test_an_analysis_that_raises_is_no_verdict_and_the_rollout_is_still_driven(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure inside the analysis must not wedge the rollout (a tick that raises would be retried for
    ever, with no verdict and no action handled): it is recorded as inconclusive, and abort still works."""
    from modelrollout import reconcile

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a judge bug")

    monkeypatch.setattr(reconcile, "run_checks", broken)
    success = {"name": "success-rate", "template": "request-success-rate", "min": 0.99}
    cluster = Cluster.make(spec_dict([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}], [success],
                                     interval="10s"))
    reconciler = Reconciler(store=cluster.store, backends={"SeldonDeployment": cluster.seldon}, events=cluster.events,
                            templates=StaticTemplates(), provider_for=lambda _: FailingCandidate(cluster),
                            limits=Limits(scrape_interval_s=1.0), clock=lambda: cluster.now)
    for _ in range(15):
        cluster.now += dt.timedelta(seconds=1)
        asyncio.run(reconciler.tick(NAMESPACE, NAME))
    checks = cluster.store.status.analysis.last_checks
    assert checks and all(c.verdict is Verdict.INCONCLUSIVE for c in checks)
    assert "the analysis failed (ValueError)" in checks[0].message
    cluster.store.obj["metadata"].setdefault("annotations", {})["modelrollout.dev/action"] = "abort"
    cluster.store.bump()
    for _ in range(3):
        cluster.now += dt.timedelta(seconds=1)
        asyncio.run(reconciler.tick(NAMESPACE, NAME))
    assert cluster.store.status.phase is Phase.ABORTED and cluster.seldon.candidate() is None
