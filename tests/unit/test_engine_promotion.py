"""Promotion (engine/promotion.py), one transition at a time (pure: no cluster, no clock): the gate first,
then adopt, promote, Succeeded."""

from __future__ import annotations

from modelrollout.api import Phase
from modelrollout.engine import TrafficChange
from modelrollout.status import ConditionType, Verdict

from tests.unit.conftest import (
    SUCCESS,
    Run,
    condition,
    make_spec,
    reasons,
)

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
    assert plan.requeue_after is None  # finished: only a change of the rollout or its deployment wakes it


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
