"""Revisions (engine/revisions.py), one transition at a time (pure: no cluster, no clock): starting one,
new candidates, invalid specs, keeping an ended one ended."""

from __future__ import annotations

import pytest
from modelrollout.api import Phase, SpecError
from modelrollout.engine import Observations, TrafficChange, decide
from modelrollout.status import ConditionType, RolloutStatus, Verdict

from tests.unit.conftest import (
    CANDIDATE_URI,
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
    watching,
)

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


def test_an_idle_status_written_by_someone_else_starts_the_rollout() -> None:
    obs = Observations(target=World().observe())
    plan = decide(make_spec(), 1, RolloutStatus(phase=Phase.IDLE), obs, T0)
    assert plan.status.phase is Phase.PROGRESSING
    assert plan.status.revision == 1
    assert plan.traffic == TrafficChange("weight", 10)


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
    assert plan.traffic is None and plan.requeue_after is None  # idle until the watch says something changed
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
