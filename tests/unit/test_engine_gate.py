"""The analysis gate (engine/gate.py), one transition at a time (pure: no cluster, no clock): when checks
are due, which results count, and when failures or inconclusive results roll back."""

from __future__ import annotations

import datetime as dt

import pytest
from modelrollout.api import Phase
from modelrollout.engine import TrafficChange, metrics_due
from modelrollout.status import ConditionType, Verdict

from tests.unit.conftest import (
    SUCCESS,
    T0,
    Run,
    at_analysis_step,
    check,
    checks_for,
    condition,
    make_spec,
    reasons,
    watching,
)

# --------------------------------------------------------------------------------------------------
# Analysis steps


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


def test_a_provider_error_on_a_tick_without_due_metrics_is_not_counted() -> None:
    run = watching()
    plan = run.tick(after=5, checks=None)
    assert plan.status.analysis.consecutive_inconclusive == 0 and plan.status.analysis.last_checks == ()


# --------------------------------------------------------------------------------------------------
# Results that are not evidence


def test_terminal_phases_ignore_late_check_results() -> None:
    run = watching(failure_limit=1)
    run.analysed_tick(Verdict.FAIL, after=30)
    plan = run.tick(after=30, checks=(check("success-rate", Verdict.PASS),))
    assert plan.status.phase is Phase.ROLLED_BACK
    assert plan.events == ()
    assert metrics_due(run.spec, run.status, run.now + dt.timedelta(hours=1)) == ()


def test_results_nobody_asked_for_are_not_evidence() -> None:
    run = at_analysis_step()
    assert run.due() == ()
    plan = run.tick(after=1, checks=(check("success-rate", Verdict.PASS), check("latency-p99", Verdict.PASS)))
    assert plan.status.analysis.last_checks == ()  # not due: a stray or late answer changes nothing
    assert "AnalysisStepPassed" not in reasons(plan)
