"""Rules of the engine that the rest of the unit suite left unpinned, found by mutation testing.

Each test here fails on a small change of the engine (a flipped comparison, a dropped argument, a lost
status field) that every other unit test tolerated. Grouped by the rule they pin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from modelrollout.analysis import (
    AnalysisContext,
    Measurement,
    QueryError,
    QueryOutcome,
    QueryVariables,
    StaticTemplates,
    ThresholdJudge,
    run_checks,
)
from modelrollout.api import JudgeKind, Metric, Phase, RolloutSpec, SpecError
from modelrollout.engine import Observations, Plan, TrafficChange, decide, metrics_due, next_check_at
from modelrollout.engine.context import ACTIVE_REQUEUE_CAP_S
from modelrollout.status import CheckRecord, ConditionType, RolloutStatus, Verdict

from tests.unit.conftest import (
    CANDIDATE_URI,
    LATENCY,
    LIMITS,
    LONG_PAUSE,
    STABLE_URI,
    SUCCESS,
    T0,
    Run,
    World,
    check,
    condition,
    make_spec,
    reasons,
    spec_dict,
    watching,
)


def rolled_back() -> Run:
    run = watching(failure_limit=1)
    run.analysed_tick(Verdict.FAIL, after=30)
    assert run.status.phase is Phase.ROLLED_BACK and not run.world.candidate_present
    return run


def restored_model(change: TrafficChange | None) -> str:
    """The stable model a rollback puts back ("" when it restores none)."""
    assert change is not None and change.kind == "rollback", change
    return change.restore_model_uri


def reappear(run: Run, weight: int = 25) -> None:
    """Someone brings this rollout's candidate predictor back after the revision ended."""
    run.world.candidate_present, run.world.candidate_weight, run.world.candidate_uri = True, weight, CANDIDATE_URI


def drive(run: Run, verdicts: dict[str, Verdict], seconds: int) -> None:
    """Tick once a second; the handler runs whatever is due and each metric gets its verdict."""
    for _ in range(seconds):
        due = run.due()
        run.tick(after=1, checks=tuple(check(m.name, verdicts[m.name]) for m in due) or None)


def foreign_status_without_a_revision() -> RolloutStatus:
    """An active phase that no revision of this operator wrote (revision 0): nothing of ours is at stake."""
    return RolloutStatus(phase=Phase.PROGRESSING, revision=0)


def world_with_a_candidate() -> World:
    return World(candidate_present=True, candidate_weight=30, candidate_uri=CANDIDATE_URI)


# --------------------------------------------------------------------------------------------------
# Deletion


def test_deleting_a_finished_rollout_keeps_its_result_and_history() -> None:
    run = rolled_back()
    plan = run.tick(after=30, deleting=True)
    assert plan.status.phase is Phase.ROLLED_BACK
    assert [h.result for h in plan.status.history] == ["RolledBack"]
    assert plan.traffic is None
    assert "Aborted" not in reasons(plan)


def test_deleting_during_a_promotion_gives_the_stable_predictor_its_old_model_back() -> None:
    run = Run(make_spec(steps=[{"setWeight": 40}]))
    run.tick()
    assert run.tick(after=1).traffic == TrafficChange("adopt")
    assert run.world.stable_uri == CANDIDATE_URI and run.status.promotion_started_at is not None
    run.world.state = "Creating"  # the stable predictor is still rolling to the new model
    plan = run.tick(after=1, deleting=True)
    assert plan.status.phase is Phase.ABORTED
    assert restored_model(plan.traffic) == STABLE_URI
    assert run.world.stable_uri == STABLE_URI


def test_deleting_before_any_promotion_write_restores_no_model() -> None:
    run = watching()
    plan = run.tick(after=1, deleting=True)
    assert plan.traffic == TrafficChange("rollback")  # restore_model_uri empty: stable never changed


def test_deleting_a_status_without_a_revision_of_ours_writes_nothing() -> None:
    obs = Observations(target=world_with_a_candidate().observe(), deleting=True)
    plan = decide(make_spec(), 1, foreign_status_without_a_revision(), obs, T0)
    assert plan.traffic is None
    assert plan.status.phase is Phase.PROGRESSING
    assert not plan.needs_finalizer


# --------------------------------------------------------------------------------------------------
# Invalid specs


def test_an_invalid_spec_on_a_status_without_a_revision_of_ours_writes_no_traffic() -> None:
    obs = Observations(target=world_with_a_candidate().observe())
    plan = decide(SpecError("spec.stablePredictor", "is required"), 1, foreign_status_without_a_revision(), obs, T0)
    assert plan.traffic is None
    assert plan.status.phase is Phase.PROGRESSING
    assert condition(plan, ConditionType.SPEC_VALID) == ("False", "InvalidSpec")


def test_an_invalid_spec_warns_again_when_its_error_changes() -> None:
    run = Run(make_spec())
    run.spec = SpecError("spec.strategy.canary.steps", "needs at least one step")
    assert reasons(run.tick()) == ["InvalidSpec"]
    assert run.tick(after=30).events == ()  # the same error: said once
    run.spec = SpecError("spec.analysis.interval", "must be at least 1s")
    plan = run.tick(after=30)
    assert reasons(plan) == ["InvalidSpec"]
    assert "spec.analysis.interval: must be at least 1s" in plan.events[0].message


def test_an_invalid_spec_mid_rollout_asks_no_rollback_when_no_candidate_exists() -> None:
    run = Run(make_spec())
    assert run.tick(apply=False).traffic == TrafficChange("weight", 10)  # asked, never applied
    run.spec = SpecError("spec.analysis.interval", "must be at least 1s")
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.FAILED
    assert plan.traffic is None


def test_an_invalid_spec_mid_rollout_records_the_candidate_weight_as_zero() -> None:
    run = watching()
    run.spec = SpecError("spec.analysis.interval", "must be at least 1s")
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("rollback")
    assert plan.status.candidate_weight == 0


def test_an_invalid_spec_while_the_target_is_unobservable_keeps_the_recorded_weight() -> None:
    run = watching()
    run.world.exists = False
    run.spec = SpecError("spec.analysis.interval", "must be at least 1s")
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.FAILED
    assert plan.traffic is None
    assert plan.status.candidate_weight == 10  # nothing was removed: the status does not claim otherwise


def test_an_invalid_spec_after_a_rollback_still_removes_a_candidate_that_reappears() -> None:
    run = rolled_back()
    reappear(run)
    run.spec = SpecError("spec.stablePredictor", "is required")
    plan = run.tick(after=30)
    assert plan.status.phase is Phase.ROLLED_BACK
    assert plan.traffic == TrafficChange("rollback")


# --------------------------------------------------------------------------------------------------
# Manual actions


def test_retry_is_accepted_without_also_being_rejected() -> None:
    run = rolled_back()
    plan = run.tick(after=60, action="retry")
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.clear_action
    assert "ActionRejected" not in reasons(plan)
    assert all(e.type == "Normal" for e in plan.events)


def test_a_rejected_action_after_a_rollback_still_removes_a_reappearing_candidate() -> None:
    run = rolled_back()
    reappear(run)
    plan = run.tick(after=30, action="pause")
    assert plan.clear_action and "ActionRejected" in reasons(plan)
    assert plan.traffic == TrafficChange("rollback")


def test_promote_action_skips_the_remaining_steps_in_status() -> None:
    spec = make_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}])
    run = Run(spec)
    run.tick()
    assert run.tick(after=1).status.phase is Phase.PAUSED
    plan = run.tick(after=5, action="promote")
    assert plan.status.phase is Phase.PROMOTING
    assert plan.status.step_index == len(spec.steps)
    assert plan.status.step_started_at == run.now
    assert condition(plan, ConditionType.PROGRESSING) == ("True", "Promoting")
    assert plan.traffic == TrafficChange("adopt")


def test_abort_while_the_stable_predictor_is_missing_leaves_the_candidate_until_stable_is_back() -> None:
    run = watching()
    run.world.stable_present = False  # removing the candidate now would leave nothing to serve
    plan = run.tick(after=1, action="abort")
    assert plan.status.phase is Phase.ABORTED
    assert plan.traffic is None
    run.world.stable_present = True
    assert run.tick(after=30).traffic == TrafficChange("rollback")
    assert not run.world.candidate_present


def test_abort_records_the_candidate_weight_as_zero() -> None:
    run = watching()
    plan = run.tick(after=1, action="abort")
    assert plan.traffic == TrafficChange("rollback")
    assert plan.status.candidate_weight == 0


# --------------------------------------------------------------------------------------------------
# Spec edits and ownership


def renamed_spec() -> RolloutSpec:
    renamed: dict[str, Any] = {"candidate": {"modelUri": CANDIDATE_URI, "version": "2.0.0",
                                             "predictorName": "main-next"}}
    return RolloutSpec.parse({**spec_dict([{"setWeight": 10}, {"pause": {}}]), **renamed}, LIMITS)


def test_a_refused_names_edit_warns_once_not_every_tick() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}]))
    run.tick()
    run.tick(after=1)
    run.spec = renamed_spec()
    plans = [run.tick(after=1) for _ in range(4)]
    assert reasons(plans[0]).count("NamesLocked") == 1
    assert all("NamesLocked" not in reasons(p) for p in plans[1:])
    assert all(condition(p, ConditionType.SPEC_VALID) == ("False", "NamesLocked") for p in plans)


def test_a_revision_that_recorded_no_names_is_not_refused_as_a_names_edit() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}]))
    run.tick()
    run.tick(after=1)
    # A revision started by an operator that did not record the names yet.
    run.status = replace(run.status, target_name="", stable_predictor="", candidate_predictor="")
    plan = run.tick(after=1)
    assert "NamesLocked" not in reasons(plan)
    assert condition(plan, ConditionType.SPEC_VALID) == ("True", "SpecAccepted")


def test_a_stable_predictor_that_already_serves_the_candidate_fails_the_rollout_and_removes_the_candidate() -> None:
    run = watching()
    run.world.stable_uri = CANDIDATE_URI  # someone put the candidate's model on the stable predictor
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.FAILED
    assert condition(plan, ConditionType.SPEC_VALID) == ("False", "CandidateIsStable")
    assert plan.traffic == TrafficChange("rollback")
    assert not run.world.candidate_present


# --------------------------------------------------------------------------------------------------
# Serving clocks and the progress deadline


def test_the_progress_deadline_rolls_back_only_once_it_is_exceeded() -> None:
    spec = make_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}], [SUCCESS], progress_deadline="30s")
    run = Run(spec)
    run.until(lambda p: run.world.candidate_weight == 10 and "WeightSet" in reasons(p))
    run.world.state = "Creating"
    assert run.tick(after=1).status.waiting_since == run.now
    assert run.tick(after=30).status.phase is Phase.PAUSED  # exactly 30s of 30s: not exceeded yet
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.ROLLED_BACK and plan.traffic == TrafficChange("rollback")


def test_no_analysis_is_due_while_the_target_is_missing() -> None:
    run = watching()
    assert metrics_due(run.spec, run.status, run.now + dt.timedelta(seconds=60)) != ()
    run.world.exists = False
    plan = run.tick(after=1)
    assert plan.status.weight_since is None
    assert metrics_due(run.spec, run.status, run.now + dt.timedelta(hours=1)) == ()


# --------------------------------------------------------------------------------------------------
# Analysis steps


def test_an_analysis_step_waits_only_for_the_metrics_it_names() -> None:
    spec = make_spec(steps=[{"setWeight": 20}, {"analysis": {"metrics": ["success-rate"]}}, {"setWeight": 100}],
                     metrics=[SUCCESS, LATENCY], failureLimit=5, inconclusiveLimit=5)
    run = Run(spec)
    run.tick()
    run.tick(after=1)
    assert run.status.step_index == 1
    drive(run, {"success-rate": Verdict.PASS, "latency-p99": Verdict.INCONCLUSIVE}, 40)
    assert any("AnalysisStepPassed" in reasons(p) for p in run.plans)
    assert run.status.step_index == 2  # past the analysis step ...
    assert run.world.candidate_weight == 20  # ... but the next weight still needs every metric


# --------------------------------------------------------------------------------------------------
# Analysis verdicts as reported


def test_analysis_passed_is_said_when_the_analysis_becomes_healthy_not_on_every_passing_check() -> None:
    run = watching()
    first = run.analysed_tick(Verdict.PASS, after=30)
    assert "AnalysisPassed" in reasons(first)
    assert condition(first, ConditionType.HEALTHY) == ("True", "ChecksPassed")
    again = run.analysed_tick(Verdict.PASS, after=30)
    assert run.due() == () and again.status.analysis.last_run_at == run.now  # the checks did run
    assert "AnalysisPassed" not in reasons(again)


def test_a_tick_with_an_inconclusive_check_never_says_analysis_passed() -> None:
    run = watching(inconclusive_limit=5)
    plan = run.tick(after=30, checks=(check("success-rate", Verdict.PASS), check("latency-p99", Verdict.INCONCLUSIVE)))
    assert plan.status.phase is Phase.PROGRESSING
    assert reasons(plan) == ["AnalysisInconclusive"]
    assert condition(plan, ConditionType.HEALTHY) == ("Unknown", "ChecksInconclusive")


# --------------------------------------------------------------------------------------------------
# Promotion order and timing


def adopted() -> Run:
    """A promotion whose first write (the stable predictor takes the candidate's model) was applied."""
    run = Run(make_spec(steps=[{"setWeight": 40}]))
    run.tick()
    assert run.tick(after=1).traffic == TrafficChange("adopt")
    return run


def test_traffic_moves_once_the_stable_predictor_served_the_new_model_for_the_settle_time() -> None:
    run = adopted()
    plan = run.tick(after=2)
    assert plan.traffic is None  # 2s after the write: the serving report may still describe the old pods
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("promote")  # 3s: settled


def test_while_the_promotion_settles_the_operator_looks_again_when_the_settle_time_ends() -> None:
    run = adopted()
    assert run.tick(after=1).requeue_after == 2.0
    assert run.tick(after=1).requeue_after == 1.0


# --------------------------------------------------------------------------------------------------
# Ended revisions stay ended


def failed_promotion(*, apply: bool) -> Run:
    """A promotion whose stable predictor never served the new model within the progress deadline."""
    run = Run(make_spec(steps=[{"setWeight": 40}], progress_deadline="60s"))
    run.tick()
    run.tick(after=1)  # adopt: the stable predictor takes the candidate's model
    run.world.state = "Creating"
    for _ in range(60):
        run.tick(after=1)
    plan = run.tick(after=1, apply=apply)
    assert plan.status.phase is Phase.FAILED
    assert restored_model(plan.traffic) == STABLE_URI
    return run


def test_a_failed_promotion_whose_rollback_was_lost_restores_the_stable_model_on_the_next_tick() -> None:
    run = failed_promotion(apply=False)
    assert run.world.stable_uri == CANDIDATE_URI  # the rollback write never happened
    plan = run.tick(after=30)
    assert plan.status.phase is Phase.FAILED
    assert restored_model(plan.traffic) == STABLE_URI
    assert run.world.stable_uri == STABLE_URI and not run.world.candidate_present


def test_a_failed_promotion_leaves_a_stable_model_someone_changed_since_alone() -> None:
    run = failed_promotion(apply=True)
    run.world.stable_uri = "file:///models/iris/3.0.0"  # a later change by someone else
    reappear(run)
    plan = run.tick(after=30)
    assert plan.traffic == TrafficChange("rollback")  # the candidate goes; the stable model stays
    assert run.world.stable_uri == "file:///models/iris/3.0.0"


def test_an_ended_revision_records_the_weight_its_reappearing_candidate_serves() -> None:
    run = rolled_back()
    reappear(run, weight=25)
    plan = run.tick(after=30, apply=False)
    assert plan.traffic == TrafficChange("rollback")
    assert plan.status.candidate_weight == 25


def test_an_ended_revision_records_no_weight_for_a_predictor_it_does_not_own() -> None:
    run = rolled_back()
    reappear(run, weight=25)
    run.world.candidate_owned = False
    plan = run.tick(after=30)
    assert plan.traffic is None  # never touched
    assert plan.status.candidate_weight == 0


def test_the_history_records_when_an_ended_revision_started_and_finished() -> None:
    run = watching()
    started = run.status.started_at
    plan = run.tick(after=7, action="abort")
    entry = plan.status.history[-1]
    assert (entry.result, entry.reason) == ("Aborted", "Aborted")
    assert entry.started_at == started == T0
    assert entry.finished_at == run.now == plan.status.finished_at
    assert plan.status.weight_since is None  # no longer serving at a weight the rollout controls


# --------------------------------------------------------------------------------------------------
# Pause clocks


def test_a_timed_pause_does_not_count_while_the_candidate_serves_another_weight() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 50}]))
    run.tick()
    run.tick(after=1)
    assert run.status.step_index == 1 and run.world.candidate_weight == 10
    run.world.candidate_weight = 5  # drift: someone lowered the candidate; the fix is never applied
    for _ in range(3):
        plan = run.tick(after=10, apply=False)
        assert plan.status.step_index == 1  # the 5s pause never ran at 10%
        assert plan.traffic == TrafficChange("weight", 10)


# --------------------------------------------------------------------------------------------------
# When checks are due


SHORT_WINDOW = {**SUCCESS, "window": "10s"}  # shorter than the 30s interval


def test_after_a_weight_change_the_next_check_comes_as_soon_as_a_full_window_at_the_new_weight_exists() -> None:
    spec = make_spec(steps=[{"setWeight": 10}, {"setWeight": 50}, {"pause": {}}], metrics=[SHORT_WINDOW])
    run = Run(spec)
    run.tick()
    run.tick(after=1)  # serving 10% from T0+1s
    plan = run.analysed_tick(Verdict.PASS, after=10)  # the first full window: a pass earns 50%
    assert plan.traffic == TrafficChange("weight", 50)
    run.tick(after=1)  # serving 50% from T0+12s
    assert run.status.candidate_weight == 50 and run.status.weight_since == T0 + dt.timedelta(seconds=12)
    metric = spec.analysis.metrics[0]
    # One full 10s window at 50% (T0+22s), not the next 30s interval after the last check (T0+41s).
    assert next_check_at(spec, run.status, metric) == T0 + dt.timedelta(seconds=22)


def test_in_an_analysis_step_the_next_check_comes_one_window_after_the_step_began() -> None:
    spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "20s"}}, {"analysis": {}}, {"setWeight": 50}],
                     metrics=[SHORT_WINDOW])
    run = Run(spec)
    run.tick()
    run.tick(after=1)  # serving 10% from T0+1s; the 20s pause runs to T0+21s
    run.analysed_tick(Verdict.PASS, after=10)  # a pass at T0+11s, from before the analysis step
    run.tick(after=10)
    assert run.status.step_index == 2 and run.status.step_started_at == T0 + dt.timedelta(seconds=21)
    metric = spec.analysis.metrics[0]
    # The earlier pass does not count in the step: a window that starts with the step ends at T0+31s.
    assert next_check_at(spec, run.status, metric) == T0 + dt.timedelta(seconds=31)


# --------------------------------------------------------------------------------------------------
# Holding the weight the steps gave


def paused_at_10_with_an_unearned_gate() -> Run:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}], metrics=[SUCCESS]))
    run.tick()
    run.tick(after=1)
    assert run.status.phase is Phase.PAUSED and run.world.candidate_weight == 10
    return run


def test_a_weight_raised_by_someone_else_is_lowered_back_even_while_the_gate_is_closed() -> None:
    run = paused_at_10_with_an_unearned_gate()
    run.world.candidate_weight = 40
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("weight", 10)
    assert run.world.candidate_weight == 10


def test_a_candidate_swapped_to_another_model_is_put_back_at_the_same_weight_while_the_gate_is_closed() -> None:
    run = paused_at_10_with_an_unearned_gate()
    run.world.candidate_uri = "file:///models/iris/0.9.0"  # same weight, wrong model
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("weight", 10)
    assert run.world.candidate_uri == CANDIDATE_URI


def test_a_pause_before_any_set_weight_step_holds_the_candidate_at_zero() -> None:
    run = Run(make_spec(steps=[{"pause": {"duration": "10s"}}, {"setWeight": 50}]))
    plan = run.tick()
    assert plan.traffic is None and not run.world.candidate_present
    plan = run.tick(after=5)
    assert plan.traffic is None and plan.status.step_index == 0
    plan = run.tick(after=5)
    assert plan.traffic == TrafficChange("weight", 50)


def test_a_blocked_set_weight_step_holds_the_weight_of_the_steps_before_it() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"setWeight": 50}, {"pause": {}}], metrics=[SUCCESS]))
    run.tick()
    run.tick(after=1)
    assert run.status.step_index == 1 and run.world.candidate_weight == 10
    plan = run.tick(after=1)
    assert plan.traffic is None  # waiting for a pass at 10%: 10% stays
    assert condition(plan, ConditionType.PROGRESSING) == ("True", "AwaitingAnalysis")
    run.world.candidate_weight = 30  # raised by someone else while the step waits
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("weight", 10)


def weights_asked(run: Run) -> list[int]:
    return [c.candidate_weight for c in run.world.applied if c.kind == "weight"]


def test_a_blocked_set_weight_step_is_not_skipped() -> None:
    spec = make_spec(steps=[{"setWeight": 10}, {"setWeight": 50}, {"analysis": {}}, {"setWeight": 100}],
                     metrics=[SUCCESS])
    run = Run(spec)
    run.tick()
    run.tick(after=1)
    plan = run.tick(after=1)
    assert plan.status.step_index == 1  # 50% waits for a pass at 10% ...
    drive(run, {"success-rate": Verdict.PASS}, 120)
    assert weights_asked(run)[:3] == [10, 50, 100]  # ... and 100% comes only after the analysis at 50%


def test_a_set_weight_step_replaces_a_candidate_left_over_from_another_model_at_the_same_weight() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"setWeight": 50}, {"pause": {}}], metrics=[SUCCESS]))
    run.tick()
    run.tick(after=1)
    plan = run.analysed_tick(Verdict.PASS, after=30, )
    assert plan.traffic == TrafficChange("weight", 50)
    run.world.candidate_weight, run.world.candidate_uri = 50, "file:///models/iris/0.9.0"  # not our model
    plan = run.tick(after=1)
    assert plan.status.step_index == 1
    assert plan.traffic == TrafficChange("weight", 50)  # the right model at 50%, never back to 10%


# --------------------------------------------------------------------------------------------------
# The ledger keeps what each check measured


def test_the_ledger_keeps_each_checks_value_bounds_query_window_and_run_time() -> None:
    run = watching()
    result = check("success-rate", Verdict.FAIL, 0.5)
    result = replace(result, query="1 - errors/requests", min=0.99, max=1.0)
    plan = run.tick(after=30, checks=(result,))
    record = plan.status.analysis.record("success-rate")
    assert record is not None
    assert (record.value, record.min, record.max) == (0.5, 0.99, 1.0)
    assert (record.query, record.window) == ("1 - errors/requests", "30s")
    assert plan.status.analysis.last_run_at == run.now
    ran_at = run.now
    plan = run.tick(after=1)  # no checks this tick: the last run stays when it was
    assert plan.status.analysis.last_run_at == ran_at


# --------------------------------------------------------------------------------------------------
# A candidate that vanished comes back only as earned


def vanish(run: Run) -> None:
    run.world.candidate_present, run.world.candidate_weight, run.world.candidate_uri = False, 0, ""


def test_a_candidate_that_vanished_after_passing_is_brought_back_to_its_weight() -> None:
    run = paused_at_10_with_an_unearned_gate()
    run.analysed_tick(Verdict.PASS, after=30)
    vanish(run)
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("weight", 10)


def test_a_candidate_that_vanished_while_failing_is_not_brought_back() -> None:
    run = paused_at_10_with_an_unearned_gate()
    plan = run.analysed_tick(Verdict.FAIL, after=30)
    assert plan.status.phase is Phase.PAUSED  # one failure, below failureLimit 2
    vanish(run)
    for _ in range(3):
        plan = run.tick(after=1)
        assert plan.traffic is None
    assert not run.world.candidate_present


# --------------------------------------------------------------------------------------------------
# Steps edited mid-rollout


def paused_at_10() -> Run:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}]))
    run.tick()
    run.tick(after=1)
    assert run.status.phase is Phase.PAUSED and run.status.step_index == 1
    return run


def test_every_steps_edit_restarts_the_steps_once() -> None:
    run = paused_at_10()
    run.spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}])
    assert "StepsChanged" in reasons(run.tick(after=1))
    run.spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "2h"}}])
    assert "StepsChanged" in reasons(run.tick(after=1))  # an edit right after an edit is still seen
    for _ in range(2):
        assert "StepsChanged" not in reasons(run.tick(after=1))  # the same steps again: nothing changed


def test_a_revision_that_kept_no_steps_hash_learns_it_and_then_sees_edits() -> None:
    run = paused_at_10()
    run.status = replace(run.status, steps_hash="")  # a revision from before the hash was kept
    plan = run.tick(after=1)
    assert plan.status.steps_hash != "" and "StepsChanged" not in reasons(plan)
    run.spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}])
    assert "StepsChanged" in reasons(run.tick(after=1))


def test_edited_steps_start_again_at_the_first_step() -> None:
    run = paused_at_10()
    run.spec = make_spec(steps=[{"setWeight": 5}, {"setWeight": 20}, {"pause": {}}])
    plan = run.tick(after=1)
    assert "StepsChanged" in reasons(plan)
    assert plan.status.step_index == 0
    assert plan.traffic == TrafficChange("weight", 5)  # a lower first weight lowers it


def test_an_edited_first_step_pause_counts_from_the_edit() -> None:
    run = paused_at_10()
    run.tick(after=60)  # the old step began a minute ago
    run.spec = make_spec(steps=[{"pause": {"duration": "5s"}}, {"setWeight": 50}])
    plan = run.tick(after=1)
    assert "StepsChanged" in reasons(plan)
    assert plan.status.step_index == 0 and plan.status.step_started_at == run.now
    assert run.tick(after=2).status.step_index == 0
    assert run.tick(after=2).status.step_index == 0  # 4s of 5s
    plan = run.tick(after=2)
    assert plan.status.step_index == 1
    assert plan.traffic == TrafficChange("weight", 50)


# --------------------------------------------------------------------------------------------------
# What every Event and Condition looks like, whatever happened


WARNING_REASONS = frozenset({
    "RolledBack", "Aborted", "Failed", "AnalysisFailed", "AnalysisInconclusive", "InvalidAction", "ActionRejected",
    "NamesLocked", "TargetNotFound", "StablePredictorNotFound", "TargetOwnedByAnother", "CandidateNameTaken",
    "InvalidSpec", "CandidateIsStable",
})
CONDITION_TYPES = frozenset(str(t) for t in ConditionType)


def scenario_actions() -> Run:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"analysis": {}}, {"setWeight": 50}],
                        metrics=[SUCCESS], failureLimit=5, inconclusiveLimit=5))
    run.tick()
    run.tick(after=1)
    for action in ("pause", "resume", "bogus", "retry", None, "pause", "resume", "promote"):
        run.analysed_tick(Verdict.PASS, after=31, action=action)
    run.until(lambda p: p.status.phase is Phase.SUCCEEDED)
    run.tick(after=1, action="abort")
    return run


def scenario_manual_promotion() -> Run:
    steps: list[dict[str, Any]] = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 50}]
    run = Run(make_spec(steps=steps))
    run.tick()
    run.tick(after=1)
    for action in ("pause", "resume", "promote"):
        run.tick(after=1, action=action)
    run.until(lambda p: p.status.phase is Phase.SUCCEEDED)
    run.spec = SpecError("spec.stablePredictor", "is required")
    run.tick(after=1)
    run.spec = make_spec(steps=steps)
    run.tick(after=1)  # SpecValid: the result stays
    return run


def scenario_failing_and_retried() -> Run:
    run = watching(failure_limit=2, inconclusive_limit=2)
    run.analysed_tick(Verdict.FAIL, after=30)
    run.analysed_tick(Verdict.INCONCLUSIVE, after=30)
    run.analysed_tick(Verdict.INCONCLUSIVE, after=30)
    assert run.status.phase is Phase.ROLLED_BACK
    run.tick(after=30, action="retry")
    run.tick(after=1)
    run.tick(after=1, action="abort")
    return run


def scenario_target_trouble() -> Run:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}]), World(exists=False))
    run.tick()
    run.world.exists = True
    run.tick(after=1)
    run.world.foreign_owner = "models/other"
    run.tick(after=1)
    run.world.foreign_owner = ""
    run.tick(after=1)
    run.spec = renamed_spec()
    run.tick(after=1)
    run.tick(after=1, deleting=True)
    return run


def scenario_specs() -> Run:
    run = Run(make_spec(steps=[{"setWeight": 40}], progress_deadline="60s"))
    run.tick()
    run.spec = SpecError("spec.stablePredictor", "is required")
    run.tick(after=1)
    run.spec = make_spec(steps=[{"setWeight": 40}], progress_deadline="60s")
    run.tick(after=1)
    run.tick(after=1)  # adopt
    run.world.state = "Failed"
    run.tick(after=1)
    run.spec = SpecError("spec.stablePredictor", "is required")
    run.tick(after=1)
    run.spec = make_spec(steps=[{"setWeight": 40}], progress_deadline="60s")
    run.tick(after=1)
    run.spec = make_spec(steps=[{"setWeight": 40}], model_uri=STABLE_URI)
    run.tick(after=1)
    return run


def scenario_edits_and_serving() -> Run:
    run = paused_at_10()
    run.spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 100}])
    run.tick(after=1)
    run.world.state = "Creating"
    run.tick(after=1)
    run.world.state = "Failed"
    run.tick(after=1)
    return run


def test_every_event_and_condition_is_well_formed() -> None:
    scenarios = [scenario_actions(), scenario_manual_promotion(), scenario_failing_and_retried(),
                 scenario_target_trouble(), scenario_specs(), scenario_edits_and_serving(),
                 Run(make_spec(), world_with_a_candidate())]
    scenarios[-1].world.candidate_owned = False
    scenarios[-1].tick()
    seen: set[str] = set()
    for run in scenarios:
        for plan in run.plans:
            for event in plan.events:
                seen.add(event.reason)
                assert event.type == ("Warning" if event.reason in WARNING_REASONS else "Normal"), event
                assert isinstance(event.message, str) and event.message, event
            for c in plan.status.conditions:
                assert c.type in CONDITION_TYPES, c
                assert c.status in ("True", "False", "Unknown"), c
                assert isinstance(c.reason, str) and c.reason[:1].isupper() and c.reason.isalpha(), c
                assert isinstance(c.message, str) and c.message, c
                assert c.observed_generation == run.generation or c.observed_generation in range(1, run.generation), c
                assert c.last_transition_time is not None, c
    # The scenarios above reach these; a reason that is never seen is not checked.
    assert seen >= {
        "RolloutStarted", "StepStarted", "WeightSet", "Paused", "Resumed", "PromotionRequested", "Promoting",
        "Promoted", "AnalysisPassed", "AnalysisStepPassed", "AnalysisFailed", "AnalysisInconclusive", "RolledBack",
        "Aborted", "Failed", "ActionRejected", "InvalidAction", "TargetNotFound", "TargetFound",
        "TargetOwnedByAnother", "CandidateNameTaken", "NamesLocked", "InvalidSpec", "SpecValid", "CandidateIsStable",
        "StepsChanged",
    }, sorted(seen)


# --------------------------------------------------------------------------------------------------
# The stable model a failed promotion goes back to


def fail_the_promotion(run: Run) -> Plan:
    run.until(lambda p: p.status.promotion_started_at is not None)
    run.world.state = "Creating"
    return run.until(lambda p: p.status.phase is Phase.FAILED, limit=80)


def test_a_target_missing_at_the_start_still_gets_its_stable_model_recorded_for_a_failed_promotion() -> None:
    run = Run(make_spec(steps=[{"setWeight": 40}], progress_deadline="60s"), World(exists=False))
    assert run.tick().status.stable_model_uri == ""
    run.world.exists = True
    assert run.tick(after=1).status.stable_model_uri == STABLE_URI
    plan = fail_the_promotion(run)
    assert restored_model(plan.traffic) == STABLE_URI
    assert run.world.stable_uri == STABLE_URI


def test_the_stable_model_is_recorded_once_when_the_revision_starts() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 40}],
                        progress_deadline="60s"))
    run.tick()
    run.world.stable_uri = "file:///models/iris/1.5.0"  # changed by someone else mid-revision
    assert run.tick(after=1).status.stable_model_uri == STABLE_URI
    assert run.tick(after=1).status.stable_version == "1.0.0"
    plan = fail_the_promotion(run)
    assert restored_model(plan.traffic) == STABLE_URI


def test_the_stable_version_stays_as_recorded_while_the_stable_predictor_takes_the_new_model() -> None:
    run = adopted()
    assert run.world.stable_uri == CANDIDATE_URI
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.PROMOTING
    assert plan.status.stable_version == "1.0.0"  # 2.0.0 only once promoted



# --------------------------------------------------------------------------------------------------
# Actions while the target is unavailable or owned by another rollout


def test_pause_and_resume_work_while_the_target_is_missing() -> None:
    run = watching()
    run.world.exists = False
    assert run.tick(after=1, action="pause").status.phase is Phase.PAUSED
    plan = run.tick(after=1, action="resume")
    assert plan.status.phase is Phase.PROGRESSING and "ActionRejected" not in reasons(plan)


def owned_by_another() -> Run:
    run = watching()
    run.world.foreign_owner = "models/other"
    return run


def test_while_another_rollout_owns_the_target_pause_and_resume_work_and_abort_is_refused() -> None:
    run = owned_by_another()
    plan = run.tick(after=1, action="abort")
    assert plan.status.phase is Phase.PROGRESSING and "ActionRejected" in reasons(plan)
    assert plan.traffic is None
    assert run.tick(after=1, action="pause").status.phase is Phase.PAUSED
    plan = run.tick(after=1, action="resume")
    assert plan.status.phase is Phase.PROGRESSING and "ActionRejected" not in reasons(plan)


def test_while_another_rollout_owns_the_target_nothing_is_analysed_and_it_looks_again_soon() -> None:
    run = owned_by_another()
    plan = run.tick(after=1)
    assert plan.status.weight_since is None and plan.status.candidate_weight == 0
    assert plan.requeue_after == ACTIVE_REQUEUE_CAP_S  # and the deployment's watch when the owner ends
    assert metrics_due(run.spec, run.status, run.now + dt.timedelta(hours=1)) == ()


def test_a_retry_with_renamed_predictors_is_not_refused_as_a_names_edit() -> None:
    run = rolled_back()
    renamed: dict[str, Any] = {"candidate": {"modelUri": CANDIDATE_URI, "version": "2.0.0",
                                             "predictorName": "main-next"}}
    run.spec = RolloutSpec.parse({**spec_dict(LONG_PAUSE, [SUCCESS, LATENCY], failureLimit=1), **renamed}, LIMITS)
    plan = run.tick(after=30, action="retry")
    assert plan.status.phase is Phase.PROGRESSING and plan.status.candidate_predictor == "main-next"
    assert "NamesLocked" not in reasons(plan)
    assert condition(plan, ConditionType.SPEC_VALID) == ("True", "SpecAccepted")


# --------------------------------------------------------------------------------------------------
# A new revision starts clean


def test_a_status_without_a_revision_of_ours_starts_revision_1_without_superseding_anything() -> None:
    obs = Observations(target=world_with_a_candidate().observe())
    plan = decide(make_spec(), 1, foreign_status_without_a_revision(), obs, T0)
    assert plan.status.revision == 1 and plan.status.history == ()
    assert plan.traffic == TrafficChange("weight", 10)


def test_a_superseded_revision_is_recorded_with_its_reason_and_times() -> None:
    run = watching()
    started = run.status.started_at
    run.spec = make_spec(steps=LONG_PAUSE, metrics=[SUCCESS, LATENCY], version="3.0.0",
                         model_uri="file:///models/iris/3.0.0")
    plan = run.tick(after=5)
    entry = plan.status.history[-1]
    assert (entry.revision, entry.result, entry.reason) == (1, "Superseded", "candidate changed to 3.0.0")
    assert (entry.started_at, entry.finished_at) == (started, run.now)


def test_checks_handed_in_on_the_tick_a_retry_starts_belong_to_the_old_revision() -> None:
    run = rolled_back()
    plan = run.tick(after=30, action="retry", checks=(check("success-rate", Verdict.FAIL, 0.1),))
    assert plan.status.revision == 2
    assert plan.status.analysis.last_checks == ()
    assert plan.status.finished_at is None
    assert plan.status.target_kind == "SeldonDeployment"


def test_a_retry_does_not_inherit_the_progress_deadline_clock() -> None:
    spec = make_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}], [SUCCESS], progress_deadline="30s")
    run = Run(spec)
    run.until(lambda p: run.world.candidate_weight == 10 and "WeightSet" in reasons(p))
    run.world.state = "Creating"
    run.tick(after=1)
    plan = run.tick(after=31, apply=False)  # rolled back, but the rollback is never applied
    assert plan.status.phase is Phase.ROLLED_BACK and run.world.candidate_present
    plan = run.tick(after=1, action="retry")
    assert plan.status.phase is Phase.PROGRESSING  # the new revision's deadline starts now
    assert run.tick(after=10).status.phase is Phase.PROGRESSING


def test_a_retry_after_a_failed_promotion_is_analysed_and_gated_again() -> None:
    run = Run(make_spec(steps=[{"setWeight": 40}], metrics=[SUCCESS], progress_deadline="60s"))
    run.tick()
    run.tick(after=1)
    run.analysed_tick(Verdict.PASS, after=30)
    assert run.status.promotion_started_at is not None
    fail_the_promotion(run)
    run.world.state = "Available"
    plan = run.tick(after=30, action="retry")
    assert plan.status.phase is Phase.PROGRESSING and plan.status.promotion_started_at is None
    run.tick(after=1)
    assert metrics_due(run.spec, run.status, run.now + dt.timedelta(seconds=31)) != ()


def test_the_next_revision_records_the_stable_model_the_last_promotion_left() -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.until(lambda p: p.status.phase is Phase.SUCCEEDED)
    run.spec = make_spec(steps=[{"setWeight": 100}], version="3.0.0", model_uri="file:///models/iris/3.0.0")
    plan = run.tick(after=1)
    assert plan.status.revision == 2
    assert plan.status.stable_model_uri == CANDIDATE_URI  # 2.0.0 is stable now, not 1.0.0


# --------------------------------------------------------------------------------------------------
# What counts as serving


def test_a_candidate_at_0_percent_is_not_serving_yet() -> None:
    world = World(candidate_present=True, candidate_weight=0, candidate_uri=CANDIDATE_URI)
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}], metrics=[SUCCESS]), world)
    run.tick(apply=False)
    plan = run.tick(after=20, apply=False)
    assert plan.status.serving_since is None and plan.status.weight_since is None


def test_a_candidate_at_1_percent_is_serving() -> None:
    run = Run(make_spec(steps=[{"setWeight": 1}, {"pause": {}}], metrics=[SUCCESS]))
    run.tick()
    plan = run.tick(after=1)
    assert plan.status.serving_since == run.now and plan.status.weight_since == run.now


def test_a_backend_that_does_not_report_the_candidates_model_still_counts_it_as_serving() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 50}]))
    run.tick()
    run.world.candidate_present, run.world.candidate_weight, run.world.candidate_uri = True, 10, ""
    plan = run.tick(after=1, apply=False)
    assert plan.status.step_index == 1 and plan.status.serving_since == run.now
    plan = run.tick(after=5, apply=False)
    assert plan.traffic == TrafficChange("weight", 50)



# --------------------------------------------------------------------------------------------------
# Analysis: the judge's bounds, the request gate, the chosen judge, windows, safe names


CONTEXT = AnalysisContext(namespace="models", target="iris", stable="main", candidate="main-candidate",
                          default_window_s=30)
RATE = Metric(name="success-rate", template="request-success-rate", min=0.99)


class Answers:
    """A metric provider: the request count, then one value for every other query."""

    def __init__(self, count: float, value: float = 1.0) -> None:
        self.count, self.value = count, value
        self.queries: list[str] = []

    async def query(self, promql: str) -> QueryOutcome:
        self.queries.append(promql)
        return QueryOutcome(value=self.count if "increase(" in promql else self.value)


def run(metrics: list[Metric], provider: Answers, **kwargs: Any) -> tuple[CheckRecord, ...]:
    return asyncio.run(run_checks(metrics, CONTEXT, provider, StaticTemplates(), **kwargs))


def test_a_value_exactly_at_max_passes() -> None:
    metric = Metric(name="latency-p99", template="request-duration-p99", max=0.25)
    verdict, _ = ThresholdJudge().judge(metric, Measurement(0.25, "30s"))
    assert verdict is Verdict.PASS


def test_exactly_min_requests_is_enough_to_judge() -> None:
    results = run([RATE], Answers(count=50), min_requests=50)
    assert results[0].verdict is Verdict.PASS


def test_min_requests_of_one_still_gates_a_candidate_without_requests() -> None:
    results = run([RATE], Answers(count=0), min_requests=1)
    assert results[0].verdict is Verdict.INCONCLUSIVE
    assert "only 0 requests" in results[0].message


def test_without_min_requests_no_request_count_is_asked() -> None:
    provider = Answers(count=0)
    results = run([RATE], provider)
    assert results[0].verdict is Verdict.PASS
    assert not any("increase(" in q for q in provider.queries)


def test_the_judge_given_is_the_judge_used() -> None:
    class Strict:
        needs_baseline = False

        def judge(self, metric: Metric, measured: Measurement) -> tuple[Verdict, str]:
            return Verdict.FAIL, f"{metric.name}: strict"

    results = run([RATE], Answers(count=100), judges={JudgeKind.THRESHOLD: Strict()}, min_requests=50)
    assert (results[0].verdict, results[0].message) == (Verdict.FAIL, "success-rate: strict")


def test_a_window_override_between_one_and_two_seconds_is_kept() -> None:
    results = run([RATE], Answers(count=100), windows={"success-rate": 1.5})
    assert results[0].window == "2s"  # 1.5s is a usable window; only below 1s does it become 1s


@pytest.mark.parametrize(("field", "value"), [
    ("candidate", "a" * 63),
    ("target", ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])),  # 253 characters
    ("target", "a" * 63 + "." + "b" * 10),
])
def test_names_up_to_the_dns_length_limits_are_accepted(field: str, value: str) -> None:
    fields = {"namespace": "models", "target": "iris", "stable": "main", "candidate": "main-candidate",
              "interval": "30s", field: value}
    assert getattr(QueryVariables(**fields), field) == value


def test_a_dns_subdomain_longer_than_253_characters_is_refused() -> None:
    target = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])  # 254 characters
    with pytest.raises(QueryError, match="target"):
        QueryVariables(namespace="models", target=target, stable="main", candidate="c", interval="30s")
