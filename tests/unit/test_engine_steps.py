"""Steps (engine/steps.py), one transition at a time (pure: no cluster, no clock): setWeight, pause and
analysis steps, and the weight they observe."""

from __future__ import annotations

import datetime as dt

import pytest
from modelrollout.api import Phase
from modelrollout.engine import TrafficChange
from modelrollout.status import ConditionType, Verdict

from tests.unit.conftest import (
    CANDIDATE_URI,
    T0,
    Run,
    World,
    at_analysis_step,
    check,
    checks_for,
    condition,
    make_spec,
    reasons,
)

# --------------------------------------------------------------------------------------------------
# Start


def test_start_records_the_weight_as_observed() -> None:
    run = Run(make_spec(), World(candidate_present=True, candidate_weight=30, candidate_uri=CANDIDATE_URI))
    plan = run.tick(apply=False)
    assert plan.status.candidate_weight == 30
    assert plan.traffic == TrafficChange("weight", 10)


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
