"""The safety invariants, one finding at a time: each test fails on an engine that breaks the promise.

- per-metric ledger: only a metric's own Pass clears its streaks;
- earned weight: no rise (step, pause expiry, resume, promote) unless every metric passed over a full
  window at the current weight; below the limits a failing or blind rollout holds, at the limits it
  rolls back;
- serving time: clocks count from when the target serves the candidate at the step's weight;
- isolated revisions: no window reaches back before this revision's candidate served;
- spec edits: steps restart, names are locked; ownership; deletion; promotion order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from modelrollout.api import Phase
from modelrollout.engine import TrafficChange, metrics_due
from modelrollout.status import ConditionType, Verdict

from tests.unit.conftest import (
    CANDIDATE_URI,
    LATENCY,
    STABLE_URI,
    SUCCESS,
    T0,
    Run,
    World,
    check,
    checks_for,
    make_spec,
    reasons,
)


def weights_asked(run: Run) -> list[int]:
    return [c.candidate_weight for c in run.world.applied if c.kind == "weight"]


def drive(run: Run, verdicts: dict[str, Verdict], seconds: int, action_at: dict[int, str] | None = None) -> None:
    """Tick once a second for ``seconds``; the handler runs what is due and each metric gets its verdict."""
    for second in range(seconds):
        due = run.due()
        checks = tuple(check(m.name, verdicts[m.name]) for m in due) or None
        run.tick(after=1, checks=checks, action=(action_at or {}).get(second))


# --------------------------------------------------------------------------------------------------
# 1. A subset analysis step never clears another metric's failure


def test_a_subset_analysis_step_does_not_clear_another_metrics_failure() -> None:
    spec = make_spec(steps=[{"setWeight": 20}, {"analysis": {"metrics": ["success-rate"]}}, {"setWeight": 100}],
                     metrics=[SUCCESS, LATENCY], failureLimit=3)
    run = Run(spec)
    run.tick()
    drive(run, {"success-rate": Verdict.PASS, "latency-p99": Verdict.FAIL}, 70)
    latency = run.status.analysis.record("latency-p99")
    assert latency is not None and latency.failures == 2  # never cleared by success-rate's passes
    assert max(weights_asked(run)) == 20  # the analysis step passed, but latency holds the weight
    assert run.status.phase is Phase.PROGRESSING
    drive(run, {"success-rate": Verdict.PASS, "latency-p99": Verdict.FAIL}, 30)
    assert run.status.phase is Phase.ROLLED_BACK
    assert all(p.status.phase is not Phase.PROMOTING for p in run.plans)


def test_only_a_metrics_own_pass_clears_its_streak_and_inconclusive_does_not_reset_failures() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}], metrics=[SUCCESS, LATENCY], failureLimit=2,
                        inconclusiveLimit=5))
    run.tick()
    run.tick(after=1)
    run.tick(after=30, checks=(check("success-rate", Verdict.FAIL), check("latency-p99", Verdict.PASS)))
    run.tick(after=30, checks=(check("success-rate", Verdict.INCONCLUSIVE), check("latency-p99", Verdict.PASS)))
    record = run.status.analysis.record("success-rate")
    assert record is not None and (record.failures, record.inconclusive) == (1, 1)
    assert run.status.phase is Phase.PAUSED
    plan = run.tick(after=30, checks=(check("success-rate", Verdict.FAIL), check("latency-p99", Verdict.PASS)))
    assert plan.status.phase is Phase.ROLLED_BACK  # fail, inconclusive, fail: two failures since its last pass


# --------------------------------------------------------------------------------------------------
# 2. Steps faster than the interval never promote an unmeasured candidate


def test_steps_faster_than_the_interval_wait_for_checks_before_promoting() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "10s"}}, {"setWeight": 100}],
                        metrics=[SUCCESS]))
    run.tick()
    checked_at: list[tuple[int, dt.datetime]] = []
    for _ in range(200):
        due = run.due()
        if due:
            checked_at.append((run.status.candidate_weight, run.now))
        plan = run.tick(after=1, checks=checks_for(due, Verdict.PASS) if due else None)
        if plan.status.phase is Phase.SUCCEEDED:
            break
    assert run.status.phase is Phase.SUCCEEDED
    weights_checked = [w for w, _ in checked_at]
    assert 10 in weights_checked and 100 in weights_checked  # measured at each weight before going on
    adopt_at = next(p.status.promotion_started_at for p in run.plans if p.status.promotion_started_at)
    last_at_100 = max(t for w, t in checked_at if w == 100)
    assert adopt_at is not None and adopt_at >= last_at_100


# --------------------------------------------------------------------------------------------------
# 3. Below the limits a failing or blind rollout holds its weight


def test_a_failing_metric_below_the_limit_holds_the_weight_past_pause_expiry() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "10s"}}, {"setWeight": 100}],
                        metrics=[SUCCESS], failureLimit=10))
    run.tick()
    drive(run, {"success-rate": Verdict.FAIL}, 120)
    assert max(weights_asked(run)) == 10
    assert run.status.phase is Phase.PROGRESSING
    assert run.status.condition(ConditionType.PROGRESSING).reason == "AwaitingAnalysis"  # type: ignore[union-attr]


def test_a_blind_rollout_holds_on_resume_and_on_promote_and_rolls_back_at_the_limit() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}], metrics=[SUCCESS],
                        inconclusiveLimit=4))
    run.tick()
    drive(run, {"success-rate": Verdict.INCONCLUSIVE}, 40, action_at={35: "resume"})
    assert run.status.phase is Phase.PROGRESSING  # resumed, but ...
    assert max(weights_asked(run)) == 10  # ... Prometheus is down: no rise
    plan = run.tick(after=1, action="promote")
    assert "ActionRejected" in reasons(plan) and plan.status.phase is Phase.PROGRESSING
    drive(run, {"success-rate": Verdict.INCONCLUSIVE}, 100)
    assert run.status.phase is Phase.ROLLED_BACK
    assert max(weights_asked(run)) == 10


# --------------------------------------------------------------------------------------------------
# 5. and 6. Isolated revisions and serving time


def test_no_window_reaches_back_before_this_revisions_candidate_served() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}], metrics=[SUCCESS], failureLimit=1))
    run.tick()
    drive(run, {"success-rate": Verdict.FAIL}, 40)
    assert run.status.phase is Phase.ROLLED_BACK
    run.tick(after=1)  # the candidate is gone
    run.spec, run.generation = make_spec(steps=[{"setWeight": 10}, {"pause": {}}], metrics=[SUCCESS],
                                         version="2.1.0", model_uri="file:///models/iris/2.1.0"), 2
    run.world.state = "Creating"
    for _ in range(5):
        run.tick(after=1)
    assert run.status.revision == 2 and run.status.serving_since is None
    run.world.state = ""
    run.tick(after=1)
    served = run.status.serving_since
    assert served == run.now
    for _ in range(45):
        due = run.due()
        if due:
            assert run.now - dt.timedelta(seconds=run.spec.analysis.window_s(due[0])) >= served
        run.tick(after=1, checks=checks_for(due, Verdict.PASS) if due else None)
    records = run.status.analysis.last_checks
    assert records and all(r.window_start is not None and r.window_start >= served for r in records)


def test_a_pause_counts_from_when_the_deployment_serves_the_weight() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50}]))
    run.tick()
    run.world.state = "Creating"  # the candidate's servers start slowly
    for _ in range(40):
        run.tick(after=1)
    assert weights_asked(run) == [10]  # 40s went by, but none of them served the candidate
    run.world.state = "Available"
    assert run.tick(after=1).status.step_index == 1  # the pause starts now
    for _ in range(29):
        plan = run.tick(after=1)
        assert plan.traffic is None
    assert run.tick(after=1).traffic == TrafficChange("weight", 50)


# --------------------------------------------------------------------------------------------------
# 7. Spec edits mid-rollout


def test_shrinking_the_steps_mid_rollout_restarts_them_instead_of_promoting() -> None:
    long = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    run = Run(make_spec(steps=long, metrics=[SUCCESS]))
    run.tick()
    drive(run, {"success-rate": Verdict.PASS}, 35, action_at={33: "resume"})
    assert run.status.step_index == 3 and run.status.candidate_weight == 50
    run.spec, run.generation = make_spec(steps=[{"setWeight": 10}], metrics=[SUCCESS]), 2
    plan = run.tick(after=1)
    assert "StepsChanged" in reasons(plan)
    assert plan.status.phase is Phase.PROGRESSING and plan.status.promotion_started_at is None
    assert plan.traffic == TrafficChange("weight", 10)  # back to the first step's weight, not promoted


def test_removing_a_blocking_metric_unblocks_a_waiting_promotion() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}], metrics=[SUCCESS, LATENCY], inconclusiveLimit=10))
    run.tick()
    drive(run, {"success-rate": Verdict.PASS, "latency-p99": Verdict.INCONCLUSIVE}, 35)
    assert run.status.phase is Phase.PROGRESSING and run.status.promotion_started_at is None
    run.spec, run.generation = make_spec(steps=[{"setWeight": 10}], metrics=[SUCCESS], inconclusiveLimit=10), 2
    drive(run, {"success-rate": Verdict.PASS}, 35)
    assert run.status.promotion_started_at is not None


def test_renaming_predictors_mid_rollout_is_refused_and_writes_keep_the_recorded_names() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}]))
    run.tick()
    run.tick(after=1)
    renamed: dict[str, Any] = {"candidate": {"modelUri": CANDIDATE_URI, "version": "2.0.0",
                                             "predictorName": "main-next"}}
    from modelrollout.api import RolloutSpec

    from tests.unit.conftest import LIMITS, spec_dict
    run.spec = RolloutSpec.parse({**spec_dict([{"setWeight": 10}, {"pause": {}}]), **renamed}, LIMITS)
    plan = run.tick(after=1)
    assert "NamesLocked" in reasons(plan)
    assert plan.status.candidate_predictor == "main-candidate"
    valid = plan.status.condition(ConditionType.SPEC_VALID)
    assert valid is not None and valid.status == "False" and valid.reason == "NamesLocked"


# --------------------------------------------------------------------------------------------------
# 8. Ownership


def test_a_second_rollout_on_the_same_stable_predictor_never_writes() -> None:
    run = Run(make_spec(), World(foreign_owner="models/first"))
    plans = [run.tick(after=1) for _ in range(5)]
    assert all(p.traffic is None for p in plans)
    assert reasons(plans[0]).count("TargetOwnedByAnother") == 1
    assert all("TargetOwnedByAnother" not in reasons(p) for p in plans[1:])  # said once
    valid = plans[-1].status.condition(ConditionType.SPEC_VALID)
    assert valid is not None and valid.reason == "TargetOwnedByAnother"
    run.world.foreign_owner = ""  # the other one ended
    assert run.tick(after=1).traffic == TrafficChange("weight", 10)


def test_a_predictor_the_user_named_like_the_candidate_is_never_taken_over_or_removed() -> None:
    world = World(candidate_present=True, candidate_weight=30, candidate_uri="file:///models/iris/9.9.9",
                  candidate_owned=False)
    run = Run(make_spec(), world)
    for action in (None, "abort", None):
        plan = run.tick(after=1, action=action)
        assert plan.traffic is None
    assert "CandidateNameTaken" in [e.reason for p in run.plans for e in p.events]
    assert world.candidate_present and world.candidate_weight == 30


# --------------------------------------------------------------------------------------------------
# 9. Deletion


def test_deleting_an_active_rollout_rolls_the_candidate_back_before_the_finalizer_goes() -> None:
    run = Run(make_spec(steps=[{"setWeight": 30}, {"pause": {}}]))
    run.tick()
    assert run.tick(after=1).needs_finalizer
    plan = run.tick(after=1, deleting=True)
    assert plan.status.phase is Phase.ABORTED and plan.traffic == TrafficChange("rollback")
    assert plan.needs_finalizer  # the rollback is not observed yet
    plan = run.tick(after=1, deleting=True)
    assert not run.world.candidate_present and plan.traffic is None and not plan.needs_finalizer


def test_a_finished_rollout_needs_no_finalizer() -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.until(lambda p: p.status.phase is Phase.SUCCEEDED)
    assert not run.tick(after=30).needs_finalizer


# --------------------------------------------------------------------------------------------------
# 10. Promotion order


def test_promotion_moves_traffic_only_once_the_stable_predictor_serves_the_new_model() -> None:
    run = Run(make_spec(steps=[{"setWeight": 40}]))
    run.tick()
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("adopt")
    assert run.world.candidate_weight == 40 and run.world.stable_uri == CANDIDATE_URI  # candidate keeps its share
    run.world.state = "Creating"  # the stable predictor's pods roll
    for _ in range(20):
        plan = run.tick(after=1)
        assert plan.traffic is None and plan.status.phase is Phase.PROMOTING
    run.world.state = "Available"
    assert run.tick(after=1).traffic == TrafficChange("promote")
    assert run.tick(after=1).status.phase is Phase.SUCCEEDED


def test_a_stable_predictor_that_cannot_serve_the_new_model_goes_back_and_the_rollout_says_so() -> None:
    run = Run(make_spec(steps=[{"setWeight": 40}], progress_deadline="60s"))
    run.tick()
    run.tick(after=1)  # adopt
    run.world.state = "Creating"
    for _ in range(60):
        assert run.tick(after=1).status.phase is Phase.PROMOTING
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.FAILED
    assert plan.traffic == TrafficChange("rollback", restore_model_uri=STABLE_URI, restore_version="1.0.0")
    assert "PromotionFailed" in [c.reason for c in plan.status.conditions]
    assert run.world.stable_uri == STABLE_URI and not run.world.candidate_present
    assert not any(p.status.phase is Phase.SUCCEEDED for p in run.plans)


def test_abort_is_refused_once_the_promotion_writes_began() -> None:
    run = Run(make_spec(steps=[{"setWeight": 40}]))
    run.tick()
    run.tick(after=1)  # adopt
    run.world.state = "Creating"
    plan = run.tick(after=1, action="abort")
    assert "ActionRejected" in reasons(plan) and plan.status.phase is Phase.PROMOTING


# --------------------------------------------------------------------------------------------------
# 14. Smaller findings


def test_a_refused_promote_after_a_new_revision_is_reported_not_cleared_silently() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}], metrics=[SUCCESS], failureLimit=5))
    run.tick()
    run.tick(after=1, action="promote")  # accepted for revision 1
    run.spec, run.generation = make_spec(steps=[{"setWeight": 10}, {"pause": {}}], metrics=[SUCCESS], failureLimit=5,
                                         version="2.1.0", model_uri="file:///models/iris/2.1.0"), 2
    run.tick(after=1)
    run.tick(after=1)
    drive(run, {"success-rate": Verdict.FAIL}, 35)
    plan = run.tick(after=1, action="promote")
    assert plan.clear_action and "ActionRejected" in reasons(plan)


def test_no_check_is_due_before_the_candidate_served_a_full_window() -> None:
    spec = make_spec(steps=[{"setWeight": 10}, {"pause": {}}], metrics=[SUCCESS])
    run = Run(spec)
    run.tick()
    run.tick(after=1)
    assert metrics_due(spec, run.status, T0 + dt.timedelta(seconds=30)) == ()
    assert metrics_due(spec, run.status, T0 + dt.timedelta(seconds=31)) != ()


def test_a_pool_under_100_rounds_weights_and_the_step_still_completes() -> None:
    """Another predictor holds 20%: 33% of the remaining 80 is a share of 26, which reads back as 32%."""

    class SharedPool(World):
        def observe(self) -> Any:
            seen = super().observe()
            share = round(self.candidate_weight * 80 / 100)
            return replace(seen, pool=80, candidate_weight=round(share * 100 / 80) if self.candidate_present else 0)

    run = Run(make_spec(steps=[{"setWeight": 33}, {"pause": {}}]), SharedPool())
    run.tick()
    plan = run.tick(after=1)
    assert plan.status.candidate_weight == 33 and plan.status.phase is Phase.PAUSED


def test_an_unearned_first_step_after_a_steps_edit_keeps_the_current_weight_not_zero() -> None:
    long = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
    run = Run(make_spec(steps=long, metrics=[SUCCESS]))
    run.tick()
    drive(run, {"success-rate": Verdict.PASS}, 35, action_at={33: "resume"})
    assert run.status.candidate_weight == 50
    run.spec, run.generation = make_spec(steps=[{"setWeight": 80}, {"pause": {}}], metrics=[SUCCESS]), 2
    for _ in range(3):  # 80 is not earned at 50 yet: hold at 50, never drop to 0 (and then jump from 0 to 80)
        plan = run.tick(after=1)
        assert plan.traffic is None and run.world.candidate_weight == 50
    drive(run, {"success-rate": Verdict.PASS}, 35)
    assert run.world.candidate_weight == 80 and min(weights_asked(run)[-3:]) > 0


def test_a_candidate_that_vanishes_before_its_first_check_comes_back_at_its_weight_not_the_next() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"setWeight": 50}, {"pause": {}}], metrics=[SUCCESS]))
    run.tick()
    run.tick(after=1)  # serving 10%, step 2 waits for a pass at 10%
    run.world.candidate_present, run.world.candidate_weight = False, 0  # someone removed the predictor
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("weight", 10)  # back where it was, never straight to 50%
    drive(run, {"success-rate": Verdict.PASS}, 40)
    assert run.world.candidate_weight == 50
