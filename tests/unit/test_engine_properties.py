"""Properties of decide over random specs and random runs of observations, actions and time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelrollout.api import Phase, RolloutSpec, SpecError
from modelrollout.engine import ACTIONS, Observations, Plan, decide, metrics_due
from modelrollout.status import ConditionType, RolloutStatus, Verdict

from tests.unit.conftest import LATENCY, LIMITS, SUCCESS, T0, World, check, spec_dict

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOT_PASS = (Verdict.FAIL, Verdict.INCONCLUSIVE)

steps_strategy = st.lists(
    st.one_of(
        st.integers(0, 100).map(lambda w: {"setWeight": w}),
        st.one_of(st.none(), st.integers(0, 120)).map(
            lambda d: {"pause": {} if d is None else {"duration": f"{d}s"}}),
        st.sampled_from([[], ["success-rate"], ["latency-p99"]]).map(lambda m: {"analysis": {"metrics": m}}),
    ),
    min_size=1, max_size=6)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    steps = draw(steps_strategy)
    needs_metrics = any("analysis" in s for s in steps)
    metrics = [SUCCESS, LATENCY] if needs_metrics else draw(st.sampled_from([[], [SUCCESS], [SUCCESS, LATENCY]]))
    if metrics:  # promotion is judged at the final weight, so it must be above 0 (the parser insists)
        steps.append({"setWeight": draw(st.integers(1, 100))})
    return spec_dict(steps, metrics, interval=f"{draw(st.integers(5, 60))}s",
                     failureLimit=draw(st.integers(1, 3)), inconclusiveLimit=draw(st.integers(1, 4)))


@dataclass(frozen=True)
class Move:
    """One tick of the simulated world."""

    after_s: int
    micros: int
    verdicts: str  # what the handler's checks say: "", "pass", "fail", "inconclusive", "mixed", "stray"
    action: str | None
    apply: bool
    disturb: str  # "", "vanish", "reappear", "readd-candidate", "new-candidate", "bad-spec", "good-spec"
    provider_error: bool


moves = st.builds(
    Move,
    after_s=st.integers(0, 90),
    micros=st.integers(0, 999_999),
    verdicts=st.sampled_from(["pass", "pass", "pass", "fail", "inconclusive", "mixed", "stray", ""]),
    action=st.one_of(st.none(), st.none(), st.none(), st.sampled_from([*ACTIONS, "bogus"])),
    apply=st.sampled_from([True, True, True, False]),
    disturb=st.sampled_from(["", "", "", "", "", "", "vanish", "reappear", "readd-candidate",
                             "new-candidate", "bad-spec", "good-spec"]),
    provider_error=st.sampled_from([False, False, False, False, False, True]),
)


def round_trip(status: RolloutStatus) -> RolloutStatus:
    return RolloutStatus.from_dict(status.to_dict())


def checks_for_tick(spec: RolloutSpec, status: RolloutStatus, now: dt.datetime, verdicts: str) -> Any:
    due = metrics_due(spec, status, now)
    if verdicts == "stray":  # results nobody asked for must not confuse the engine either
        return (check("success-rate", Verdict.FAIL, 0.1),)
    if not due or not verdicts:
        return None
    if verdicts == "mixed":
        return tuple(check(m.name, (Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE)[i % 3])
                     for i, m in enumerate(due))
    verdict = {"pass": Verdict.PASS, "fail": Verdict.FAIL, "inconclusive": Verdict.INCONCLUSIVE}[verdicts]
    return tuple(check(m.name, verdict) for m in due)


@dataclass(frozen=True)
class Tick:
    before: RolloutStatus  # as persisted (already through to_dict/from_dict)
    obs: Observations
    plan: Plan
    spec: RolloutSpec | SpecError
    generation: int
    now: dt.datetime
    spec_fixed: bool  # the spec was invalid before this tick and is valid now


def simulate(raw_spec: dict[str, Any], plan_moves: list[Move]) -> list[Tick]:
    """Run the moves against a simulated SeldonDeployment and return every tick."""
    good = RolloutSpec.parse(raw_spec, LIMITS)
    other = RolloutSpec.parse({**raw_spec, "candidate": {"modelUri": "file:///models/iris/3.0.0", "version": "3.0.0"}},
                              LIMITS)
    spec: RolloutSpec | SpecError = good
    world, status, now, generation = World(), RolloutStatus(), T0, 1
    ticks = []
    for move in plan_moves:
        now += dt.timedelta(seconds=move.after_s, microseconds=move.micros)
        if move.disturb == "vanish":
            world.exists = False
        elif move.disturb == "reappear":
            world.exists = True
        elif move.disturb == "readd-candidate" and world.exists:
            world.candidate_present, world.candidate_weight = True, 30
        elif move.disturb == "new-candidate" and isinstance(spec, RolloutSpec):
            spec, generation = (other if spec is good else good), generation + 1
        elif move.disturb == "bad-spec":
            spec, generation = SpecError("spec.strategy", "broken on purpose"), generation + 1
        elif move.disturb == "good-spec" and isinstance(spec, SpecError):
            spec, generation = good, generation + 1
        checks = checks_for_tick(spec, status, now, move.verdicts) if isinstance(spec, RolloutSpec) else None
        if move.provider_error and isinstance(spec, RolloutSpec) and metrics_due(spec, status, now):
            checks = tuple(check(m.name, Verdict.INCONCLUSIVE, message=f"{m.name}: Prometheus unreachable")
                           for m in metrics_due(spec, status, now))
        obs = Observations(target=world.observe(), checks=checks, action=move.action)
        plan = decide(spec, generation, status, obs, now)
        valid_spec = status.condition(ConditionType.SPEC_VALID)
        spec_fixed = isinstance(spec, RolloutSpec) and valid_spec is not None and valid_spec.reason == "InvalidSpec"
        ticks.append(Tick(status, obs, plan, spec, generation, now, spec_fixed))
        if move.apply:
            world.apply(plan.traffic, plan.status.candidate_model_uri)
        status = round_trip(plan.status)
    return ticks


runs = st.tuples(specs(), st.lists(moves, min_size=1, max_size=25))

# Short weight-only rollouts under mostly bad analysis: the promotion gate is tested at every turn.
gate_specs = st.builds(
    lambda weights, failures, inconclusive: spec_dict([{"setWeight": w} for w in weights], [SUCCESS, LATENCY],
                                                      interval="10s", failureLimit=failures,
                                                      inconclusiveLimit=inconclusive),
    st.lists(st.integers(1, 100), min_size=1, max_size=3), st.integers(2, 4), st.integers(2, 4))
gate_moves = st.builds(
    Move, after_s=st.integers(0, 20), micros=st.just(0),
    verdicts=st.sampled_from(["pass", "fail", "inconclusive", "mixed", "stray"]),
    action=st.sampled_from([None, None, "promote", "pause", "resume"]), apply=st.just(True),
    disturb=st.just(""), provider_error=st.sampled_from([False, False, False, True]))
gate_runs = st.tuples(gate_specs, st.lists(gate_moves, min_size=1, max_size=20))


@SETTINGS
@given(runs)
def test_traffic_weights_are_whole_percentages(run: tuple[dict[str, Any], list[Move]]) -> None:
    for tick in simulate(*run):
        obs, plan = tick.obs, tick.plan
        if plan.traffic is not None:
            assert isinstance(plan.traffic.candidate_weight, int)
            assert 0 <= plan.traffic.candidate_weight <= 100
            assert not isinstance(plan.traffic.candidate_weight, bool)
        assert 0 <= plan.status.candidate_weight <= 100
        if not obs.target.ready:
            assert plan.traffic is None  # nothing is moved on a target the operator cannot see


def _earned_at(spec: RolloutSpec, status: RolloutStatus, weight: int) -> bool:
    """Every defined metric's latest record is a Pass with no streak, taken at ``weight`` over a window that
    started once the candidate served that weight (spelled out here, not through the engine's own gate)."""
    for metric in spec.analysis.metrics:
        record = status.analysis.record(metric.name)
        if (record is None or record.verdict is not Verdict.PASS or record.failures or record.inconclusive
                or record.weight != weight or status.weight_since is None or record.window_start is None
                or record.window_start < status.weight_since):
            return False
    return True


@SETTINGS
@given(st.one_of(runs, gate_runs))
def test_never_promotes_over_a_failed_or_inconclusive_check(run: tuple[dict[str, Any], list[Move]]) -> None:
    promoted = 0
    for tick in simulate(*run):
        before, obs, plan, spec = tick.before, tick.obs, tick.plan, tick.spec
        decided = plan.status.promotion_started_at is not None and before.promotion_started_at is None \
            and plan.status.revision == before.revision
        if decided and isinstance(spec, RolloutSpec):
            promoted += 1
            if obs.checks is not None:  # results that were not due are no evidence and are discarded
                due = {m.name for m in metrics_due(spec, before, tick.now)}
                assert not [c for c in obs.checks if c.verdict in NOT_PASS and c.metric in due]
            assert _earned_at(spec, plan.status, plan.status.candidate_weight)
            assert plan.status.candidate_weight > 0 or not spec.analysis.metrics
        if plan.status.phase is Phase.SUCCEEDED and isinstance(spec, RolloutSpec):
            assert all(c.verdict is Verdict.PASS for c in plan.status.analysis.last_checks)


@SETTINGS
@given(st.one_of(runs, gate_runs))
def test_the_weight_rises_only_when_every_metric_earned_it(run: tuple[dict[str, Any], list[Move]]) -> None:
    for tick in simulate(*run):
        before, obs, plan, spec = tick.before, tick.obs, tick.plan, tick.spec
        if not isinstance(spec, RolloutSpec) or plan.traffic is None or plan.traffic.kind != "weight":
            continue
        observed = obs.target.candidate_weight if obs.target.candidate_ours else 0
        if plan.traffic.candidate_weight <= observed or not spec.analysis.metrics:
            continue
        if plan.status.revision != before.revision or observed == 0:
            # from 0: only a candidate that never served, or one whose every latest check passed
            assert plan.status.serving_since is None or all(
                r.verdict is Verdict.PASS for r in plan.status.analysis.last_checks)
            continue
        assert _earned_at(spec, plan.status, observed), (observed, plan.traffic, plan.status.analysis)


@SETTINGS
@given(runs)
def test_terminal_phases_stay_terminal(run: tuple[dict[str, Any], list[Move]]) -> None:
    for tick in simulate(*run):
        before, plan, spec = tick.before, tick.plan, tick.spec
        if before.phase is None or not before.phase.terminal:
            continue
        if plan.status.revision == before.revision:
            assert plan.status.phase is before.phase  # not even an invalid spec rewrites a finished result
            continue
        new_candidate = isinstance(spec, RolloutSpec) and (
            spec.candidate.version, spec.candidate.model_uri) != (before.candidate_version, before.candidate_model_uri)
        retried = tick.obs.action == "retry" and before.phase is not Phase.SUCCEEDED
        assert new_candidate or retried or tick.spec_fixed
        assert plan.status.revision == before.revision + 1


@SETTINGS
@given(runs)
def test_replaying_from_a_persisted_status_gives_the_same_plan(run: tuple[dict[str, Any], list[Move]]) -> None:
    for tick in simulate(*run):
        replayed = decide(tick.spec, tick.generation, round_trip(tick.before), tick.obs, tick.now)
        assert replayed == tick.plan
        assert round_trip(tick.plan.status) == tick.plan.status  # nothing is lost when it is persisted


@SETTINGS
@given(runs)
def test_status_stays_within_what_the_crd_declares(run: tuple[dict[str, Any], list[Move]]) -> None:
    phases = {str(p) for p in Phase}
    for tick in simulate(*run):
        plan = tick.plan
        raw = plan.status.to_dict()
        assert raw["phase"] in phases
        assert 0 <= raw["candidateWeight"] <= 100
        assert all(c["status"] in ("True", "False", "Unknown") for c in raw["conditions"])
        assert len({c["type"] for c in raw["conditions"]}) == len(raw["conditions"])
        assert all(c["verdict"] in ("Pass", "Fail", "Inconclusive") for c in raw["analysis"]["lastChecks"])
        assert plan.status.observed_generation >= 1
        assert plan.requeue_after is None or plan.requeue_after > 0
        assert plan.requeue_after is not None or (plan.status.phase is not None and plan.status.phase.terminal)
