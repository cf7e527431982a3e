"""The shadow strategy (engine/shadow.py, steps._mirror_step) and its spec.

Invariants pinned here:
- while the candidate is a shadow, nothing the engine asks gives it live traffic: every weight change is
  to 0 with a mirror, whatever the checks say, until the shadow step is done;
- the shadow step is done only after its duration of serving time as a shadow AND every metric's Pass
  over a full window as the shadow; a failure there rolls it back (the predictor goes) without it ever
  having had live traffic;
- a shadow goes live (its first setWeight) only through the gate; passes as a shadow never count at a
  live weight, and a shadow that vanished and came back must pass again before it goes live;
- with no steps, a passing shadow is promoted (the ordered promotion) and never gets a weight first.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from modelrollout.api import RolloutSpec, SpecError, StepKind, StrategyKind
from modelrollout.engine import TrafficChange
from modelrollout.status import Phase, Verdict

from tests.unit.conftest import LATENCY, LIMITS, SUCCESS, Run, check, reasons, spec_dict


def shadow_spec(steps: list[dict[str, Any]] | None = None, **shadow: Any) -> dict[str, Any]:
    raw = spec_dict(metrics=[SUCCESS, LATENCY], interval="10s")
    raw["strategy"] = {"shadow": {"duration": "30s", **shadow, **({"steps": steps} if steps is not None else {})}}
    return raw


def shadow_run(steps: list[dict[str, Any]] | None = None, **shadow: Any) -> Run:
    run = Run(RolloutSpec.parse(shadow_spec(steps, **shadow), LIMITS))
    run.tick()
    run.tick(after=1)  # the shadow answers mirrored requests from T0+1
    assert (run.world.candidate_present, run.world.candidate_weight) == (True, 0)
    assert run.world.candidate_mirror == shadow.get("mirrorPercent", 100)
    return run


def drive(run: Run, seconds: int, verdicts: dict[str, Verdict], *, until_live: bool = False) -> list[int]:
    """One tick a second; each due check gets its metric's verdict. Returns the live weight seen each tick
    (stopping at the end of the rollout, or with ``until_live`` at the first live weight)."""
    weights = []
    for _ in range(seconds):
        run.now += dt.timedelta(seconds=1)
        due = run.due()
        found = tuple(check(m.name, verdicts[m.name]) for m in due)
        run.tick(checks=found or None)
        weights.append(run.world.candidate_weight)
        if (run.status.phase is not None and run.status.phase.terminal) or (until_live and weights[-1] > 0):
            break
    return weights


def pass_until_asked_for(run: Run, weight: int) -> None:
    """Every due check passes, a tick a second, until the engine asks for ``weight``; that one change is
    not applied (lost), everything before it is."""
    for _ in range(30):
        run.now += dt.timedelta(seconds=1)
        due = run.due()
        plan = run.tick(checks=tuple(check(m.name, Verdict.PASS) for m in due) or None, apply=False)
        if plan.traffic is not None and plan.traffic.candidate_weight == weight:
            return
        run.world.apply(plan.traffic, plan.status.candidate_model_uri)
    raise AssertionError(f"{weight}% was never asked for; status: {run.status}")


def remove_candidate(run: Run) -> None:
    """Someone else deletes the candidate predictor."""
    run.world.candidate_present, run.world.candidate_mirror, run.world.candidate_uri = False, 0, ""


ALL_PASS = {"success-rate": Verdict.PASS, "latency-p99": Verdict.PASS}


def test_the_spec_parses_into_a_mirror_step_then_the_declared_canary_steps() -> None:
    spec = RolloutSpec.parse(shadow_spec([{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"setWeight": 50}],
                                         mirrorPercent=40, duration="2m"), LIMITS)
    assert spec.strategy is StrategyKind.SHADOW and spec.shadow is not None
    assert [s.kind for s in spec.steps] == [StepKind.MIRROR, StepKind.SET_WEIGHT, StepKind.PAUSE,
                                            StepKind.SET_WEIGHT]
    assert (spec.steps[0].mirror, spec.steps[0].duration_s) == (40, 120)
    alone = RolloutSpec.parse(shadow_spec(), LIMITS)
    assert [s.kind for s in alone.steps] == [StepKind.MIRROR] and alone.steps[0].mirror == 100


@pytest.mark.parametrize("shadow, steps, metrics, field", [
    ({"mirrorPercent": 0}, None, None, "spec.strategy.shadow.mirrorPercent"),
    ({"mirrorPercent": 101}, None, None, "spec.strategy.shadow.mirrorPercent"),
    ({"mirrorPercent": "all"}, None, None, "spec.strategy.shadow.mirrorPercent"),
    ({"duration": None}, None, None, "spec.strategy.shadow.duration"),
    ({"duration": "0s"}, None, None, "spec.strategy.shadow.duration"),
    ({"duration": "169h"}, None, None, "spec.strategy.shadow.duration"),
    ({}, None, [], "spec.analysis.metrics"),  # a shadow nobody measures proves nothing
    ({}, [{"setWeight": 20}, {"setWeight": 0}], None, "spec.strategy.shadow.steps"),
    ({}, [{"analysis": {"metrics": ["nope"]}}], None, "spec.strategy.shadow.steps[0].analysis.metrics"),
    ({}, "setWeight: 20", None, "spec.strategy.shadow.steps"),
])
def test_malformed_shadow_specs_are_refused_naming_the_field(shadow: dict[str, Any], steps: Any,
                                                             metrics: list[Any] | None, field: str) -> None:
    raw = shadow_spec(**{k: v for k, v in shadow.items() if v is not None})
    if shadow.get("duration", "") is None:
        del raw["strategy"]["shadow"]["duration"]
    if steps is not None:
        raw["strategy"]["shadow"]["steps"] = steps
    if metrics is not None:
        raw["analysis"]["metrics"] = metrics
    with pytest.raises(SpecError) as refused:
        RolloutSpec.parse(raw, LIMITS)
    assert refused.value.field_path == field


def test_the_shadow_gets_no_live_traffic_while_its_checks_pass_before_the_duration_ran() -> None:
    run = shadow_run([{"setWeight": 20}, {"setWeight": 50}], duration="60s")
    weights = drive(run, 55, ALL_PASS)
    assert set(weights) == {0} and run.status.candidate_mirror == 100
    assert all(c.candidate_weight == 0 for c in run.world.applied if c.kind == "weight")
    assert run.status.analysis.last_checks and all(r.weight == 0 for r in run.status.analysis.last_checks)
    drive(run, 10, ALL_PASS, until_live=True)  # the duration ran (T0+61) and every metric passed as the shadow
    assert run.world.candidate_weight == 20 and run.world.candidate_mirror == 0


def test_the_shadow_stays_a_shadow_past_its_duration_until_every_metric_passed_there() -> None:
    run = shadow_run([{"setWeight": 20}, {"setWeight": 50}], duration="20s")
    unmeasured = {"success-rate": Verdict.PASS, "latency-p99": Verdict.INCONCLUSIVE}
    weights = drive(run, 25, unmeasured)  # T0+26: the duration ran, latency was never measured
    assert run.status.phase is Phase.PROGRESSING and run.status.step_index == 0  # still the shadow step
    assert "latency-p99" in run.status.message
    weights += drive(run, 20, unmeasured)
    assert set(weights) == {0}
    assert "ShadowPassed" not in [e for p in run.plans for e in reasons(p)]
    assert run.status.phase is Phase.ROLLED_BACK  # latency never measured: inconclusiveLimit 3, never a pass
    assert not run.world.candidate_present
    assert [c.kind for c in run.world.applied] == ["weight", "rollback"]


def test_a_failing_shadow_is_removed_without_ever_serving_a_user() -> None:
    run = shadow_run([{"setWeight": 20}], duration="20s")
    weights = drive(run, 60, {"success-rate": Verdict.FAIL, "latency-p99": Verdict.PASS})
    assert set(weights) == {0}
    assert run.status.phase is Phase.ROLLED_BACK and not run.world.candidate_present
    assert run.status.candidate_weight == 0 and run.status.candidate_mirror == 0
    assert "RolledBack" in reasons(run.plans[-1])


def test_passes_as_a_shadow_do_not_count_at_the_first_live_weight() -> None:
    run = shadow_run([{"setWeight": 20}, {"setWeight": 50}], duration="10s")
    drive(run, 25, ALL_PASS, until_live=True)
    assert run.world.candidate_weight == 20
    went_live = run.now
    weights = drive(run, 9, ALL_PASS)  # no full window at 20% yet: the shadow's passes are at weight 0
    assert set(weights) == {20}
    drive(run, 15, ALL_PASS)
    assert run.world.candidate_weight == 50 and run.now - went_live >= dt.timedelta(seconds=11)


def test_a_shadow_without_steps_is_promoted_without_ever_getting_a_weight() -> None:
    run = shadow_run(duration="15s")
    drive(run, 60, ALL_PASS)
    assert run.status.phase is Phase.SUCCEEDED
    assert [c.kind for c in run.world.applied] == ["weight", "adopt", "promote"]
    assert run.world.applied[0] == TrafficChange("weight", 0, mirror_percent=100)
    assert "ShadowPassed" in [e for p in run.plans for e in reasons(p)]


def test_a_shadow_removed_by_someone_else_comes_back_and_its_clock_starts_again() -> None:
    run = shadow_run([{"setWeight": 20}, {"setWeight": 50}], duration="30s")
    drive(run, 20, ALL_PASS)
    remove_candidate(run)
    run.tick(after=1)  # sees it gone and asks for the shadow again
    assert run.world.candidate_mirror == 100 and run.world.candidate_weight == 0
    back = run.now
    weights = drive(run, 25, ALL_PASS)  # 30 s from T0+1 have passed, but not 30 s since it came back
    assert set(weights) == {0}
    drive(run, 20, ALL_PASS, until_live=True)
    assert run.world.candidate_weight == 20 and run.now - back >= dt.timedelta(seconds=30)


def test_a_shadow_that_vanished_at_its_first_setweight_must_pass_again_before_going_live() -> None:
    run = shadow_run([{"setWeight": 20}, {"setWeight": 50}], duration="10s")
    pass_until_asked_for(run, 20)  # the step to 20% is lost with the shadow itself
    assert run.status.step_index == 1 and run.world.candidate_mirror == 100
    remove_candidate(run)
    run.tick(after=1)
    assert run.world.candidate_mirror == 100 and run.world.candidate_weight == 0  # back as a shadow first
    weights = drive(run, 8, ALL_PASS)  # no full window as the shadow since it came back
    assert set(weights) == {0}
    drive(run, 10, ALL_PASS, until_live=True)
    assert run.world.candidate_weight == 20


def test_pause_holds_the_shadow_and_resume_goes_on() -> None:
    run = shadow_run([{"setWeight": 20}, {"setWeight": 50}], duration="10s")
    run.tick(after=1, action="pause")
    assert run.status.phase is Phase.PAUSED and "as a shadow of 100% of requests" in run.status.message
    weights = drive(run, 30, ALL_PASS)
    assert set(weights) == {0} and run.world.candidate_mirror == 100
    run.tick(after=1, action="resume")
    drive(run, 15, ALL_PASS, until_live=True)
    assert run.world.candidate_weight == 20


AGREEMENT = {"name": "agreement", "template": "shadow-agreement", "min": 0.9}


def test_agreement_is_judged_only_while_the_candidate_is_a_shadow() -> None:
    """Once live nothing is mirrored: a shadow-only metric is neither checked nor required there, so it
    cannot hold the canary steps that follow (nor roll them back as inconclusive)."""
    raw = shadow_spec([{"setWeight": 20}, {"setWeight": 50}], duration="10s")
    raw["analysis"]["metrics"] = [SUCCESS, AGREEMENT]
    run = Run(RolloutSpec.parse(raw, LIMITS))
    run.tick()
    run.tick(after=1)
    drive(run, 30, {"success-rate": Verdict.PASS, "agreement": Verdict.PASS}, until_live=True)
    assert run.world.candidate_weight == 20
    assert {m.name for m in run.due()} <= {"success-rate"}
    weights = drive(run, 60, {"success-rate": Verdict.PASS, "agreement": Verdict.INCONCLUSIVE})
    assert 50 in weights and run.status.phase is Phase.SUCCEEDED


def test_a_shadow_only_metric_is_refused_outside_the_shadow_strategy() -> None:
    with pytest.raises(SpecError) as refused:
        RolloutSpec.parse(spec_dict(metrics=[SUCCESS, AGREEMENT]), LIMITS)
    assert refused.value.field_path == "spec.analysis.metrics" and "agreement" in str(refused.value)


def test_a_shadow_that_vanished_after_a_failed_check_comes_back_to_be_judged() -> None:
    run = shadow_run([{"setWeight": 20}, {"setWeight": 50}], duration="10s")
    pass_until_asked_for(run, 20)  # lose the step to 20% together with the shadow
    run.now += dt.timedelta(seconds=10)  # a failed check lands as it vanishes
    due = run.due()
    run.tick(checks=tuple(check(m.name, Verdict.FAIL if m.name == "latency-p99" else Verdict.PASS)
                          for m in due), apply=False)
    remove_candidate(run)
    run.tick(after=1)
    assert run.world.candidate_present and run.world.candidate_mirror == 100 and run.world.candidate_weight == 0


def test_a_live_candidate_made_a_shadow_again_goes_back_to_its_last_weight_first() -> None:
    run = shadow_run([{"setWeight": 20}, {"setWeight": 50}], duration="10s")
    drive(run, 30, ALL_PASS, until_live=True)
    pass_until_asked_for(run, 50)  # the step to 50% is lost, and someone turns the candidate into a shadow
    assert run.status.step_index == 2
    run.world.candidate_weight, run.world.candidate_mirror = 0, 100
    weights = drive(run, 40, ALL_PASS)
    live = [w for w in weights if w]
    assert live and live[0] == 20  # back to the weight it had earned first, never straight to 50
