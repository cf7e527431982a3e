"""The rollout state machine, one transition at a time (pure: no cluster, no clock)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from modelrollout.api import Phase, SpecError
from modelrollout.engine import (
    Observations,
    Plan,
    TargetObservation,
    TrafficChange,
    decide,
    metrics_due,
)
from modelrollout.status import ConditionType, RolloutStatus, Verdict

from tests.unit.conftest import (
    CANDIDATE_URI,
    LATENCY,
    LONG_PAUSE,
    STABLE_URI,
    SUCCESS,
    T0,
    Run,
    World,
    check,
    checks_for,
    condition,
    make_spec,
    reasons,
    watching,
)


def at_weight(run: Run, weight: int) -> Plan:
    """Tick until the candidate serves ``weight`` and the engine has moved past that setWeight step."""
    return run.until(lambda p: run.world.candidate_weight == weight and "WeightSet" in reasons(p))


# --------------------------------------------------------------------------------------------------
# Start


def test_new_object_starts_revision_1_and_asks_for_the_first_weight() -> None:
    run = Run(make_spec(), generation=4)
    plan = run.tick()
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.revision == 1
    assert plan.status.step_index == 0
    assert plan.status.observed_generation == 4
    assert plan.status.candidate_version == "2.0.0"
    assert plan.status.candidate_model_uri == CANDIDATE_URI
    assert plan.status.stable_version == "1.0.0"
    assert plan.status.started_at == T0
    assert plan.traffic == TrafficChange("weight", 10)
    assert reasons(plan) == ["RolloutStarted", "StepStarted"]
    assert all(e.type == "Normal" for e in plan.events)
    assert condition(plan, ConditionType.PROGRESSING) == ("True", "RolloutStarted")
    assert condition(plan, ConditionType.COMPLETED) == ("False", "InProgress")
    assert condition(plan, ConditionType.SPEC_VALID) == ("True", "SpecAccepted")
    assert plan.requeue_after <= 1.0


def test_start_records_the_weight_as_observed() -> None:
    run = Run(make_spec(), World(candidate_present=True, candidate_weight=30, candidate_uri=CANDIDATE_URI))
    plan = run.tick(apply=False)
    assert plan.status.candidate_weight == 30
    assert plan.traffic == TrafficChange("weight", 10)


def test_times_are_stored_in_whole_seconds_so_a_persisted_status_replays_exactly() -> None:
    spec = make_spec()
    obs = Observations(target=World().observe())
    plan = decide(spec, 1, RolloutStatus(), obs, T0 + dt.timedelta(microseconds=654321))
    assert plan.status.started_at == T0
    restored = RolloutStatus.from_dict(plan.status.to_dict())
    later = T0 + dt.timedelta(seconds=3, microseconds=1)
    assert decide(spec, 1, restored, obs, later) == decide(spec, 1, plan.status, obs, later)


# --------------------------------------------------------------------------------------------------
# setWeight


def test_set_weight_step_waits_until_the_weight_is_observed() -> None:
    run = Run(make_spec())
    run.tick(apply=False)
    plan = run.tick(after=1, apply=False)  # the backend did not get to it: ask again, do not advance
    assert plan.status.step_index == 0
    assert plan.traffic == TrafficChange("weight", 10)
    assert "WeightSet" not in reasons(plan)
    run.world.apply(plan.traffic, run.spec.candidate.model_uri)
    plan = run.tick(after=1)
    assert plan.status.step_index == 1
    assert plan.status.candidate_weight == 10
    assert plan.traffic == TrafficChange("weight", 50)
    assert reasons(plan) == ["WeightSet", "StepStarted"]
    assert "10%" in plan.events[0].message


def test_set_weight_is_not_confirmed_by_a_candidate_left_over_from_another_model() -> None:
    stale = World(candidate_present=True, candidate_weight=10, candidate_uri="file:///models/iris/1.5.0")
    plan = Run(make_spec(), stale).tick(apply=False)
    assert plan.status.step_index == 0
    assert plan.traffic == TrafficChange("weight", 10)


def test_consecutive_steps_advance_in_one_tick_when_nothing_has_to_wait() -> None:
    spec = make_spec(steps=[{"setWeight": 0}, {"pause": {"duration": "0s"}}, {"setWeight": 20}])
    plan = Run(spec).tick()
    assert plan.status.step_index == 2
    assert plan.traffic == TrafficChange("weight", 20)


# --------------------------------------------------------------------------------------------------
# Pauses


def test_timed_pause_waits_for_its_duration_then_moves_on() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"setWeight": 50}]))
    run.tick()
    plan = run.tick(after=1)
    assert plan.status.step_index == 1
    assert plan.status.step_started_at == T0 + dt.timedelta(seconds=1)
    plan = run.tick(after=27)
    assert plan.status.step_index == 1
    assert plan.traffic is None
    assert plan.requeue_after == pytest.approx(3.0)
    plan = run.tick(after=3)
    assert plan.status.step_index == 2
    assert plan.traffic == TrafficChange("weight", 50)


def test_timed_pause_puts_drifted_weights_back() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}]))
    run.tick()
    run.tick(after=1)
    run.world.candidate_weight = 40  # someone edited the SeldonDeployment by hand
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("weight", 10)
    assert plan.status.step_index == 1


def test_indefinite_pause_holds_until_resumed() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]))
    run.tick()
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.PAUSED
    assert condition(plan, ConditionType.PROGRESSING) == ("False", "Paused")
    for _ in range(3):
        plan = run.tick(after=3600)
        assert plan.status.phase is Phase.PAUSED
        assert plan.traffic is None
        assert plan.events == ()
    plan = run.tick(after=1, action="resume")
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.step_index == 2
    assert plan.traffic == TrafficChange("weight", 50)
    assert plan.clear_action
    assert plan.status.last_handled_action == "resume"
    assert reasons(plan)[0] == "Resumed"


# --------------------------------------------------------------------------------------------------
# Analysis steps

ANALYSIS_STEPS: list[dict[str, Any]] = [
    {"setWeight": 20}, {"analysis": {"metrics": ["success-rate"]}}, {"setWeight": 100}]


def at_analysis_step() -> Run:
    run = Run(make_spec(steps=ANALYSIS_STEPS, metrics=[SUCCESS, LATENCY]))
    run.tick()
    plan = run.tick(after=1)
    assert plan.status.step_index == 1
    return run


def test_analysis_step_asks_for_its_metrics_and_advances_when_they_pass() -> None:
    run = at_analysis_step()  # the candidate serves 20% since T0+1
    assert run.due() == ()  # an analysis step judges a full window at its weight, not traffic from before it
    run.now = T0 + dt.timedelta(seconds=30)
    assert run.due() == ()
    run.now = T0 + dt.timedelta(seconds=31)
    assert "success-rate" in [m.name for m in run.due()]
    plan = run.tick(checks=checks_for(run.due(), Verdict.PASS))
    assert plan.status.step_index == 2
    assert plan.traffic == TrafficChange("weight", 100)
    assert "AnalysisStepPassed" in reasons(plan)


@pytest.mark.parametrize(("verdict", "counter"), [(Verdict.FAIL, "consecutive_failures"),
                                                  (Verdict.INCONCLUSIVE, "consecutive_inconclusive")])
def test_analysis_step_does_not_advance_on_a_non_pass_and_counts_it(verdict: Verdict, counter: str) -> None:
    run = at_analysis_step()
    plan = run.tick(after=30, checks=(check("success-rate", verdict, 0.5),))
    assert plan.status.step_index == 1
    assert plan.status.phase is Phase.PROGRESSING
    assert getattr(plan.status.analysis, counter) == 1
    assert plan.traffic is None
    assert plan.events[0].type == "Warning"
    assert "success-rate" not in [m.name for m in run.due()]  # run again one interval later, not every tick
    run.now += dt.timedelta(seconds=30)
    assert "success-rate" in [m.name for m in run.due()]


def test_analysis_step_ignores_results_from_before_it_started() -> None:
    run = Run(make_spec(steps=[{"setWeight": 20}, {"pause": {"duration": "60s"}}, {"analysis": {}}],
                        metrics=[SUCCESS]))
    run.tick()
    run.tick(after=1)  # serving 20% since T0+1; the pause ends at T0+61
    run.analysed_tick(Verdict.PASS, after=30)
    plan = run.analysed_tick(Verdict.PASS, after=30)  # T0+61: the analysis step starts in this tick
    assert plan.status.step_index == 2
    assert "AnalysisStepPassed" not in reasons(plan)  # that check's window began before the step
    plan = run.analysed_tick(Verdict.PASS, after=30)  # a full window inside the step
    assert "AnalysisStepPassed" in reasons(plan)


def test_analysis_step_fails_the_rollout_at_the_failure_limit() -> None:
    run = at_analysis_step()
    run.tick(after=30, checks=(check("success-rate", Verdict.FAIL, 0.9),))
    plan = run.tick(after=30, checks=(check("success-rate", Verdict.FAIL, 0.9),))
    assert plan.status.phase is Phase.ROLLED_BACK
    assert plan.traffic == TrafficChange("rollback")


# --------------------------------------------------------------------------------------------------
# Background analysis





def test_background_analysis_is_due_every_interval_while_the_candidate_has_traffic() -> None:
    run = watching()  # the candidate serves since T0+1
    assert run.due() == ()  # the first run waits one window, so its window holds only candidate traffic
    run.now = T0 + dt.timedelta(seconds=30)
    assert run.due() == ()
    run.now = T0 + dt.timedelta(seconds=31)
    assert [m.name for m in run.due()] == ["success-rate", "latency-p99"]
    run.tick(checks=checks_for(run.due(), Verdict.PASS))
    assert run.due() == ()
    run.now += dt.timedelta(seconds=29)
    assert run.due() == ()
    run.now += dt.timedelta(seconds=1)
    assert len(run.due()) == 2


def test_no_background_analysis_without_candidate_traffic() -> None:
    run = Run(make_spec(steps=[{"pause": {"duration": "1h"}}, {"setWeight": 10}], metrics=[SUCCESS]))
    run.tick()
    run.now += dt.timedelta(minutes=10)
    assert run.due() == ()


def test_requeue_is_capped_while_progressing_and_aims_at_the_next_analysis() -> None:
    run = watching()
    plan = run.tick(after=27)
    assert plan.requeue_after == pytest.approx(3.0)  # due one window after the candidate served, at T0+31
    plan = run.tick(after=2, checks=None)
    assert 1.0 <= plan.requeue_after <= 5.0


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_background_failures_roll_back_at_exactly_the_failure_limit(limit: int) -> None:
    run = watching(failure_limit=limit)
    for n in range(1, limit + 1):
        plan = run.analysed_tick(Verdict.FAIL, after=30)
        if n < limit:
            assert plan.status.phase is Phase.PROGRESSING
            assert plan.status.analysis.consecutive_failures == n
            assert plan.traffic is None
            assert reasons(plan) == ["AnalysisFailed"]
    assert plan.status.phase is Phase.ROLLED_BACK
    assert plan.traffic == TrafficChange("rollback")
    assert plan.status.finished_at == run.now
    assert plan.status.history[-1].result == "RolledBack"
    assert plan.status.history[-1].reason == "AnalysisFailed"
    assert condition(plan, ConditionType.COMPLETED) == ("True", "RolledBack")
    assert condition(plan, ConditionType.HEALTHY) == ("False", "ChecksFailed")
    assert "RolledBack" in reasons(plan)


def test_rollback_event_names_the_metric_value_and_threshold() -> None:
    run = watching(failure_limit=1)
    run.now += dt.timedelta(seconds=30)
    failing = check("success-rate", Verdict.FAIL, 0.931, "success-rate = 0.931 is below min 0.99 over 30s")
    plan = run.tick(checks=(failing, check("latency-p99", Verdict.PASS, 0.1)))
    event = next(e for e in plan.events if e.reason == "RolledBack")
    assert event.type == "Warning"
    assert event.message.startswith("Rolled back 2.0.0: success-rate = 0.931 is below min 0.99 over 30s")
    assert "1 consecutive" in event.message
    assert run.world.candidate_present is False


def test_a_passing_tick_resets_the_failure_count() -> None:
    run = watching(failure_limit=2)
    run.analysed_tick(Verdict.FAIL, after=30)
    plan = run.analysed_tick(Verdict.PASS, after=30)
    assert plan.status.analysis.consecutive_failures == 0
    assert condition(plan, ConditionType.HEALTHY) == ("True", "ChecksPassed")
    assert "AnalysisPassed" in reasons(plan)
    plan = run.analysed_tick(Verdict.FAIL, after=30)
    assert plan.status.phase is Phase.PROGRESSING


def test_any_fail_in_a_tick_counts_as_a_failure() -> None:
    run = watching(failure_limit=5)
    run.now += dt.timedelta(seconds=30)
    plan = run.tick(checks=(check("success-rate", Verdict.PASS), check("latency-p99", Verdict.FAIL, 0.9)))
    assert plan.status.analysis.consecutive_failures == 1
    assert plan.status.analysis.consecutive_inconclusive == 0


def test_inconclusive_checks_roll_back_at_the_inconclusive_limit() -> None:
    run = watching(failure_limit=1, inconclusive_limit=3)
    for n in (1, 2):
        plan = run.analysed_tick(Verdict.INCONCLUSIVE, after=30)
        assert plan.status.analysis.consecutive_inconclusive == n
        assert plan.status.phase is Phase.PROGRESSING
        assert condition(plan, ConditionType.HEALTHY) == ("Unknown", "ChecksInconclusive")
    plan = run.analysed_tick(Verdict.INCONCLUSIVE, after=30)
    assert plan.status.phase is Phase.ROLLED_BACK
    assert plan.status.history[-1].reason == "AnalysisInconclusive"
    assert plan.traffic == TrafficChange("rollback")
    assert "no data is never a pass" in plan.status.message


def test_a_provider_error_counts_as_inconclusive_and_is_reported() -> None:
    run = watching(inconclusive_limit=2)
    run.now += dt.timedelta(seconds=30)
    down = "success-rate: Prometheus unreachable at http://prometheus:9090: connection refused — inconclusive"
    plan = run.tick(checks=(check("success-rate", Verdict.INCONCLUSIVE, message=down),
                            check("latency-p99", Verdict.INCONCLUSIVE)))
    assert plan.status.analysis.consecutive_inconclusive == 1
    assert condition(plan, ConditionType.HEALTHY) == ("Unknown", "ChecksInconclusive")
    healthy = plan.status.condition(ConditionType.HEALTHY)
    assert healthy is not None and "Prometheus unreachable" in healthy.message
    plan = run.analysed_tick(Verdict.INCONCLUSIVE, after=1)  # not due again yet: nothing is counted
    assert plan.status.analysis.consecutive_inconclusive == 1
    plan = run.analysed_tick(Verdict.INCONCLUSIVE, after=30)
    assert plan.status.phase is Phase.ROLLED_BACK


def test_analysis_keeps_watching_a_paused_candidate() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}], metrics=[SUCCESS], failureLimit=1))
    run.tick()
    assert run.tick(after=1).status.phase is Phase.PAUSED
    run.now += dt.timedelta(seconds=30)
    assert [m.name for m in run.due()] == ["success-rate"]
    plan = run.tick(checks=(check("success-rate", Verdict.FAIL, 0.5),))
    assert plan.status.phase is Phase.ROLLED_BACK
    assert plan.traffic == TrafficChange("rollback")


# --------------------------------------------------------------------------------------------------
# Promotion


def test_last_step_leads_to_promotion_and_success() -> None:
    run = Run(make_spec(steps=[{"setWeight": 50}, {"setWeight": 100}]))
    run.tick()
    run.tick(after=1)
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.PROMOTING
    assert plan.traffic == TrafficChange("adopt")  # the stable predictor takes the model first
    assert plan.status.promotion_started_at == run.now
    assert "Promoting" in reasons(plan)
    plan = run.tick(after=1)
    assert plan.traffic is None  # waits until the stable predictor has had time to serve it
    plan = run.tick(after=3)
    assert plan.traffic == TrafficChange("promote")
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.SUCCEEDED
    assert plan.traffic is None
    assert plan.status.candidate_weight == 0
    assert plan.status.stable_version == "2.0.0"
    assert plan.status.history[-1].result == "Succeeded"
    assert plan.status.history[-1].version == "2.0.0"
    assert condition(plan, ConditionType.COMPLETED) == ("True", "Succeeded")
    assert condition(plan, ConditionType.PROGRESSING) == ("False", "RolloutSucceeded")
    assert reasons(plan) == ["Promoted"]
    assert plan.requeue_after == 30.0


def test_promotion_is_asked_for_again_until_observed() -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.tick()
    run.tick(after=1, apply=False)
    plan = run.tick(after=1, apply=False)
    assert plan.status.phase is Phase.PROMOTING
    assert plan.traffic == TrafficChange("adopt")  # never applied: still asked for


def test_no_promotion_while_the_latest_analysis_is_not_a_pass() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "30s"}}], metrics=[SUCCESS],
                        inconclusiveLimit=5))
    run.tick()
    run.tick(after=1)
    plan = run.analysed_tick(Verdict.INCONCLUSIVE, after=30)
    assert plan.status.step_index == 2  # steps done ...
    assert plan.status.phase is Phase.PROGRESSING  # ... but no promotion on an inconclusive result
    assert plan.traffic is None
    assert condition(plan, ConditionType.PROGRESSING) == ("True", "AwaitingAnalysis")
    assert run.due() == ()
    plan = run.analysed_tick(Verdict.PASS, after=30)
    assert plan.status.phase is Phase.PROMOTING
    assert plan.traffic == TrafficChange("adopt")




def test_a_provider_error_on_a_tick_without_due_metrics_is_not_counted() -> None:
    run = watching()
    plan = run.tick(after=5, checks=None)
    assert plan.status.analysis.consecutive_inconclusive == 0 and plan.status.analysis.last_checks == ()


# --------------------------------------------------------------------------------------------------
# Manual actions


def test_pause_action_pauses_without_touching_traffic() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"setWeight": 50}]))
    run.tick()
    plan = run.tick(after=1, action="pause", apply=False)
    assert plan.status.phase is Phase.PAUSED
    assert plan.traffic is None
    assert plan.clear_action
    assert plan.status.last_handled_action == "pause"
    assert reasons(plan) == ["Paused"]
    plan = run.tick(after=10)
    assert plan.status.phase is Phase.PAUSED
    assert plan.status.step_index == 0
    assert plan.traffic is None
    plan = run.tick(after=1, action="resume")
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.traffic == TrafficChange("weight", 50)


def test_resume_after_a_manual_pause_continues_the_same_step() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}]))
    run.tick()
    run.tick(after=1)
    run.tick(after=1, action="pause")
    plan = run.tick(after=1, action="resume")
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.step_index == 1


@pytest.mark.parametrize(("action", "reason"), [("resume", "ActionRejected"), ("retry", "ActionRejected"),
                                                ("bogus", "InvalidAction"), ("PAUSE", "InvalidAction")])
def test_inapplicable_or_unknown_actions_are_rejected_and_cleared(action: str, reason: str) -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}]))
    run.tick()
    run.tick(after=1)
    before = run.status
    plan = run.tick(after=1, action=action)
    assert plan.clear_action
    assert reasons(plan) == [reason]
    assert plan.events[0].type == "Warning"
    assert action in plan.events[0].message
    assert plan.status.phase is before.phase
    assert plan.status.step_index == before.step_index
    assert plan.status.last_handled_action == before.last_handled_action
    assert plan.traffic is None


def test_a_repeated_action_seen_again_before_its_annotation_is_removed_is_cleared_quietly() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}]))
    run.tick()
    run.tick(after=1, action="pause")
    plan = run.tick(after=1, action="pause")
    assert plan.clear_action
    assert plan.events == ()
    assert plan.status.phase is Phase.PAUSED


def test_promote_action_skips_the_remaining_steps() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]))
    run.tick()
    plan = run.tick(after=1, action="promote")
    assert plan.status.phase is Phase.PROMOTING
    assert plan.traffic == TrafficChange("adopt")
    assert plan.clear_action
    assert plan.status.last_handled_action == "promote"
    assert "PromotionRequested" in reasons(plan)
    run.tick(after=4)
    assert run.tick(after=1).status.phase is Phase.SUCCEEDED


def test_promote_action_is_refused_while_the_latest_analysis_failed() -> None:
    run = watching(failure_limit=3)
    run.analysed_tick(Verdict.FAIL, after=30)
    plan = run.tick(after=1, action="promote")
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.traffic is None
    assert plan.clear_action
    assert reasons(plan) == ["ActionRejected"]
    assert "did not pass" in plan.events[0].message


def test_promote_action_is_refused_on_the_checks_of_the_same_tick() -> None:
    run = watching(failure_limit=3)
    run.now += dt.timedelta(seconds=30)
    plan = run.tick(checks=checks_for(run.due(), Verdict.INCONCLUSIVE), action="promote")
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.traffic is None
    assert "ActionRejected" in reasons(plan)


def test_abort_action_rolls_back() -> None:
    run = watching()
    plan = run.tick(after=1, action="abort")
    assert plan.status.phase is Phase.ABORTED
    assert plan.traffic == TrafficChange("rollback")
    assert plan.clear_action
    assert plan.status.last_handled_action == "abort"
    assert plan.status.history[-1].result == "Aborted"
    assert reasons(plan) == ["Aborted"]
    assert run.world.candidate_present is False


def test_abort_is_rejected_once_promotion_is_under_way() -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.tick()
    run.tick(after=1, apply=False)
    run.world.candidate_weight = 100
    run.tick(after=1, apply=False)
    assert run.status.phase is Phase.PROMOTING
    plan = run.tick(after=1, action="abort", apply=False)
    assert plan.status.phase is Phase.PROMOTING
    assert reasons(plan) == ["ActionRejected"]


def test_retry_after_a_rollback_starts_a_new_revision_of_the_same_candidate() -> None:
    run = watching(failure_limit=1)
    run.analysed_tick(Verdict.FAIL, after=30)
    assert run.status.phase is Phase.ROLLED_BACK
    plan = run.tick(after=60, action="retry")
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.revision == 2
    assert plan.status.candidate_version == "2.0.0"
    assert plan.status.step_index == 0
    assert plan.status.analysis.consecutive_failures == 0
    assert plan.status.analysis.last_checks == ()
    assert plan.traffic == TrafficChange("weight", 10)
    assert plan.clear_action
    assert plan.status.last_handled_action == "retry"
    assert [h.result for h in plan.status.history] == ["RolledBack"]
    assert "retry" in plan.events[0].message


@pytest.mark.parametrize("action", ["pause", "resume", "promote", "abort", "retry"])
def test_actions_other_than_retry_are_rejected_after_success(action: str) -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.until(lambda p: p.status.phase is Phase.SUCCEEDED)
    plan = run.tick(after=1, action=action)
    assert plan.status.phase is Phase.SUCCEEDED
    assert plan.clear_action
    assert reasons(plan) == ["ActionRejected"]


# --------------------------------------------------------------------------------------------------
# New candidates


def test_a_new_candidate_mid_rollout_supersedes_the_running_revision() -> None:
    run = Run(make_spec(steps=[{"setWeight": 10}, {"pause": {}}]))
    run.tick()
    run.tick(after=1)
    run.spec = make_spec(steps=[{"setWeight": 10}, {"pause": {}}], version="3.0.0",
                         model_uri="file:///models/iris/3.0.0")
    plan = run.tick(after=1)
    assert plan.status.revision == 2
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.candidate_version == "3.0.0"
    assert plan.status.step_index == 0
    assert plan.status.history[-1].result == "Superseded"
    assert plan.status.history[-1].version == "2.0.0"
    assert plan.traffic == TrafficChange("rollback")  # the old candidate goes first
    assert reasons(plan) == ["RolloutStarted", "CandidateReset"]
    plan = run.tick(after=1)
    assert plan.traffic == TrafficChange("weight", 10)
    plan = run.tick(after=1)
    assert run.world.candidate_uri == "file:///models/iris/3.0.0"
    assert plan.status.phase is Phase.PAUSED


def test_a_new_candidate_after_success_starts_the_next_revision() -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.until(lambda p: p.status.phase is Phase.SUCCEEDED)
    run.spec = make_spec(steps=[{"setWeight": 100}], version="3.0.0", model_uri="file:///models/iris/3.0.0")
    plan = run.tick(after=1)
    assert plan.status.revision == 2
    assert plan.status.stable_version == "2.0.0"
    assert [h.result for h in plan.status.history] == ["Succeeded"]
    assert plan.traffic == TrafficChange("weight", 100)


def test_checks_gathered_for_the_old_revision_do_not_count_for_the_new_one() -> None:
    run = watching(failure_limit=1)
    run.spec = make_spec(steps=LONG_PAUSE, metrics=[SUCCESS], version="3.0.0",
                         model_uri="file:///models/iris/3.0.0", failureLimit=1)
    plan = run.tick(after=30, checks=(check("success-rate", Verdict.FAIL, 0.1),))
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.analysis.consecutive_failures == 0


def test_candidate_equal_to_the_stable_model_fails_without_traffic() -> None:
    run = Run(make_spec(model_uri=STABLE_URI))
    plan = run.tick()
    assert plan.status.phase is Phase.FAILED
    assert plan.traffic is None
    assert condition(plan, ConditionType.SPEC_VALID) == ("False", "CandidateIsStable")
    assert reasons(plan) == ["RolloutStarted", "CandidateIsStable"]
    assert plan.events[-1].type == "Warning"
    plan = run.tick(after=30)
    assert plan.status.phase is Phase.FAILED
    assert plan.events == ()


# --------------------------------------------------------------------------------------------------
# Target problems


@pytest.mark.parametrize(("world", "reason"), [(World(exists=False), "TargetNotFound"),
                                               (World(stable_present=False), "StablePredictorNotFound")])
def test_a_missing_target_moves_no_traffic_and_warns_once(world: World, reason: str) -> None:
    run = Run(make_spec(), world)
    plan = run.tick()
    assert plan.traffic is None
    assert plan.status.phase is Phase.PROGRESSING
    assert condition(plan, ConditionType.PROGRESSING) == ("False", reason)
    assert condition(plan, ConditionType.SPEC_VALID) == ("False", reason)
    assert reason in reasons(plan)
    assert plan.requeue_after <= 5.0
    for _ in range(3):
        plan = run.tick(after=5)
        assert plan.traffic is None
        assert plan.events == ()
        assert plan.status.phase is Phase.PROGRESSING
    run.world.exists = run.world.stable_present = True
    plan = run.tick(after=5)
    assert reasons(plan)[0] == "TargetFound"
    assert plan.traffic == TrafficChange("weight", 10)
    assert condition(plan, ConditionType.SPEC_VALID) == ("True", "SpecAccepted")


def test_the_handler_error_text_is_shown_when_given() -> None:
    obs = Observations(target=TargetObservation(
        exists=True, stable_present=False,
        error="stable predictor 'main' not found in SeldonDeployment models/iris"))
    plan = decide(make_spec(), 1, RolloutStatus(), obs, T0)
    assert "Stable predictor 'main' not found in SeldonDeployment models/iris" in plan.status.message


def test_promotion_is_refused_while_the_target_is_missing() -> None:
    run = Run(make_spec())
    run.tick()
    run.world.exists = False
    plan = run.tick(after=1, action="promote")
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.traffic is None
    assert "ActionRejected" in reasons(plan)


def test_a_vanished_target_during_promotion_holds_it() -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.tick()
    run.tick(after=1, apply=False)
    run.world.candidate_weight = 100
    run.tick(after=1, apply=False)
    run.world.stable_present = False
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.PROMOTING
    assert plan.traffic is None


# --------------------------------------------------------------------------------------------------
# Invalid specs


def test_an_invalid_spec_fails_once_and_a_valid_generation_recovers() -> None:
    run = Run(make_spec())
    run.spec = SpecError("spec.strategy.canary.steps", "needs at least one step")
    plan = run.tick()
    assert plan.status.phase is Phase.FAILED
    assert plan.traffic is None
    assert condition(plan, ConditionType.SPEC_VALID) == ("False", "InvalidSpec")
    assert reasons(plan) == ["InvalidSpec"]
    assert "spec.strategy.canary.steps: needs at least one step" in plan.events[0].message
    assert run.tick(after=30).events == ()  # no event spam
    plan = run.tick(after=1, action="resume")
    assert plan.clear_action and reasons(plan) == ["ActionRejected"]
    run.spec, run.generation = make_spec(), 2
    plan = run.tick(after=30)
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.revision == 1
    assert plan.status.observed_generation == 2
    assert condition(plan, ConditionType.SPEC_VALID) == ("True", "SpecAccepted")
    assert plan.traffic == TrafficChange("weight", 10)




def test_an_invalid_spec_after_success_keeps_the_result() -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.until(lambda p: p.status.phase is Phase.SUCCEEDED)
    run.spec = SpecError("spec.stablePredictor", "is required")
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.SUCCEEDED
    assert condition(plan, ConditionType.SPEC_VALID) == ("False", "InvalidSpec")
    run.spec = make_spec(steps=[{"setWeight": 100}])
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.SUCCEEDED
    assert plan.status.revision == 1
    assert condition(plan, ConditionType.SPEC_VALID) == ("True", "SpecAccepted")


# --------------------------------------------------------------------------------------------------
# Terminal phases


@pytest.mark.parametrize("end", ["rolled-back", "aborted", "candidate-is-stable"])
def test_a_rolled_back_rollout_removes_a_candidate_that_reappears(end: str) -> None:
    if end == "candidate-is-stable":
        run = Run(make_spec(model_uri=STABLE_URI))
        run.tick()
    else:
        run = watching(failure_limit=1)
        if end == "aborted":
            run.tick(after=1, action="abort")
        else:
            run.analysed_tick(Verdict.FAIL, after=30)
    phase = run.status.phase
    assert phase is not None and phase.terminal
    plan = run.tick(after=30)
    assert plan.traffic is None and plan.requeue_after == 30.0
    run.world.candidate_present, run.world.candidate_weight = True, 25
    plan = run.tick(after=30)
    assert plan.status.phase is phase
    assert plan.traffic == TrafficChange("rollback")
    assert run.world.candidate_present is False
    assert run.tick(after=30).traffic is None


def test_a_succeeded_rollout_leaves_traffic_alone() -> None:
    run = Run(make_spec(steps=[{"setWeight": 100}]))
    run.until(lambda p: p.status.phase is Phase.SUCCEEDED)
    run.world.candidate_present, run.world.candidate_weight = True, 10
    plan = run.tick(after=30)
    assert plan.status.phase is Phase.SUCCEEDED
    assert plan.traffic is None


def test_terminal_phases_ignore_late_check_results() -> None:
    run = watching(failure_limit=1)
    run.analysed_tick(Verdict.FAIL, after=30)
    plan = run.tick(after=30, checks=(check("success-rate", Verdict.PASS),))
    assert plan.status.phase is Phase.ROLLED_BACK
    assert plan.events == ()
    assert metrics_due(run.spec, run.status, run.now + dt.timedelta(hours=1)) == ()


# --------------------------------------------------------------------------------------------------
# A whole rollout


def test_a_full_rollout_with_every_kind_of_step() -> None:
    spec = make_spec(steps=[{"setWeight": 10}, {"pause": {"duration": "30s"}}, {"analysis": {}},
                            {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}], metrics=[SUCCESS, LATENCY])
    run = Run(spec)
    seen: list[Phase] = []
    for _ in range(40):
        plan = run.analysed_tick(Verdict.PASS, after=5, action="resume" if run.status.phase is Phase.PAUSED else None)
        if plan.status.phase is not None and plan.status.phase not in seen:
            seen.append(plan.status.phase)
        if plan.status.phase is Phase.SUCCEEDED:
            break
    assert seen == [Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.SUCCEEDED]
    assert [c.kind for c in run.world.applied] == ["weight", "weight", "weight", "adopt", "promote"]
    assert [c.candidate_weight for c in run.world.applied[:3]] == [10, 50, 100]
    assert run.world.stable_uri == CANDIDATE_URI
    events = [e for p in run.plans for e in p.events]
    assert all(e.message.endswith(".") for e in events), [e.message for e in events if not e.message.endswith(".")]
    assert not [e for e in events if e.type == "Warning"]


def test_an_idle_status_written_by_someone_else_starts_the_rollout() -> None:
    obs = Observations(target=World().observe())
    plan = decide(make_spec(), 1, RolloutStatus(phase=Phase.IDLE), obs, T0)
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.revision == 1
    assert plan.traffic == TrafficChange("weight", 10)


def test_the_stable_version_is_learnt_once_the_target_appears() -> None:
    run = Run(make_spec(), World(exists=False))
    assert run.tick().status.stable_version == ""
    run.world.exists = True
    assert run.tick(after=5).status.stable_version == "1.0.0"


# --------------------------------------------------------------------------------------------------
# A candidate that is not serving yet


def test_no_step_and_no_analysis_while_the_candidate_is_not_serving() -> None:
    spec = make_spec([{"setWeight": 10}, {"pause": {"duration": "5s"}}, {"setWeight": 100}], [SUCCESS])
    run = Run(spec)
    at_weight(run, 10)
    run.world.state = "Creating"
    step = run.status.step_index
    for _ in range(10):
        plan = run.tick(after=spec.analysis.interval_s)
        assert plan.status.step_index == step and plan.traffic is None
        assert plan.status.phase is Phase.PROGRESSING
        assert "resume once it serves" in plan.status.message
        assert plan.requeue_after <= 1.0
    assert plan.status.analysis.consecutive_inconclusive == 0
    assert plan.status.weight_since is None
    run.world.state = "Available"
    run.tick(after=1)  # serving again: the clocks start over from here
    assert metrics_due(spec, run.status, run.now + dt.timedelta(seconds=30))


def test_abort_still_works_while_the_candidate_is_not_serving() -> None:
    run = Run(make_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}], [SUCCESS]))
    at_weight(run, 10)
    run.world.state = "Creating"
    plan = run.tick(after=1, action="abort")
    assert plan.status.phase is Phase.ABORTED and plan.traffic == TrafficChange("rollback")


def test_a_deployment_that_reports_failed_is_rolled_back() -> None:
    run = Run(make_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}], [SUCCESS]))
    at_weight(run, 10)
    run.world.state = "Failed"
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.ROLLED_BACK and plan.traffic == TrafficChange("rollback")
    assert any(e.reason == "RolledBack" and "reports Failed" in e.message for e in plan.events)
    assert run.tick(after=1).status.candidate_weight == 0


def test_a_deployment_that_never_serves_is_rolled_back_after_the_progress_deadline() -> None:
    spec = make_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}], [SUCCESS], progress_deadline="30s")
    run = Run(spec)
    at_weight(run, 10)
    run.world.state = "Creating"
    first = run.tick(after=1)
    assert first.status.waiting_since == run.now and first.status.phase is Phase.PAUSED
    assert run.tick(after=29).status.phase is Phase.PAUSED  # 29s of 30s: still waiting
    plan = run.tick(after=2)
    assert plan.status.phase is Phase.ROLLED_BACK and plan.traffic == TrafficChange("rollback")
    assert any("progressDeadline 30s" in e.message for e in plan.events)


def test_serving_again_stops_the_progress_deadline_clock() -> None:
    spec = make_spec([{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}], [SUCCESS], progress_deadline="30s")
    run = Run(spec)
    at_weight(run, 10)
    run.world.state = "Creating"
    run.tick(after=1)
    run.tick(after=20)
    run.world.state = "Available"
    assert run.tick(after=1).status.waiting_since is None
    run.world.state = "Creating"
    run.tick(after=1)
    assert run.tick(after=20).status.phase is Phase.PAUSED  # the clock started again: 20s of 30s


def test_an_invalid_spec_mid_rollout_fails_it_and_rolls_the_candidate_back() -> None:
    run = watching()
    run.spec = SpecError("spec.analysis.interval", "must be at least 1s")
    plan = run.tick(after=1)
    assert plan.status.phase is Phase.FAILED
    assert plan.traffic == TrafficChange("rollback")  # not left at its weight with nothing analysing it
    assert "rolled back" in plan.status.message
    assert plan.status.history[-1].result == "Failed"
    assert plan.status.history[-1].reason == "InvalidSpec"
    assert run.tick(after=1).status.candidate_weight == 0
    run.spec = make_spec(steps=LONG_PAUSE)
    plan = run.tick(after=1)
    assert plan.status.revision == 2
    assert plan.status.phase is Phase.PROGRESSING


def test_results_nobody_asked_for_are_not_evidence() -> None:
    run = at_analysis_step()
    assert run.due() == ()
    plan = run.tick(after=1, checks=(check("success-rate", Verdict.PASS), check("latency-p99", Verdict.PASS)))
    assert plan.status.analysis.last_checks == ()  # not due: a stray or late answer changes nothing
    assert "AnalysisStepPassed" not in reasons(plan)
