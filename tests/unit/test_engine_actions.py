"""Manual actions (engine/actions.py), one transition at a time (pure: no cluster, no clock): pause,
resume, promote, abort, retry, and the ones that are rejected."""

from __future__ import annotations

import datetime as dt

import pytest
from modelrollout.api import Phase
from modelrollout.engine import TrafficChange
from modelrollout.status import Verdict

from tests.unit.conftest import (
    Run,
    checks_for,
    make_spec,
    reasons,
    watching,
)

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
