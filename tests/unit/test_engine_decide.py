"""The tick as a whole (engine/decide.py), one transition at a time (pure: no cluster, no clock): replay,
requeue, a missing target, a candidate that is not serving yet, a whole rollout."""

from __future__ import annotations

import datetime as dt

import pytest
from modelrollout.api import Phase
from modelrollout.engine import Observations, Plan, TargetObservation, TrafficChange, decide, metrics_due
from modelrollout.engine.context import ACTIVE_REQUEUE_CAP_S
from modelrollout.status import ConditionType, RolloutStatus, Verdict

from tests.unit.conftest import (
    CANDIDATE_URI,
    LATENCY,
    SUCCESS,
    T0,
    Run,
    World,
    condition,
    make_spec,
    reasons,
    watching,
)

# --------------------------------------------------------------------------------------------------
# Replay and requeue


def test_times_are_stored_in_whole_seconds_so_a_persisted_status_replays_exactly() -> None:
    spec = make_spec()
    obs = Observations(target=World().observe())
    plan = decide(spec, 1, RolloutStatus(), obs, T0 + dt.timedelta(microseconds=654321))
    assert plan.status.started_at == T0
    restored = RolloutStatus.from_dict(plan.status.to_dict())
    later = T0 + dt.timedelta(seconds=3, microseconds=1)
    assert decide(spec, 1, restored, obs, later) == decide(spec, 1, plan.status, obs, later)


def test_requeue_is_capped_while_progressing_and_aims_at_the_next_analysis() -> None:
    run = watching()
    plan = run.tick(after=27)
    assert plan.requeue_after == pytest.approx(3.0)  # due one window after the candidate served, at T0+31
    plan = run.tick(after=2, checks=None)
    assert plan.requeue_after is not None and 1.0 <= plan.requeue_after <= run.spec.analysis.interval_s


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
    # The deployment's watch wakes the rollout when its target appears; the clock is the resync only.
    assert plan.requeue_after == ACTIVE_REQUEUE_CAP_S
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


def test_the_stable_version_is_learnt_once_the_target_appears() -> None:
    run = Run(make_spec(), World(exists=False))
    assert run.tick().status.stable_version == ""
    run.world.exists = True
    assert run.tick(after=5).status.stable_version == "1.0.0"


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


# --------------------------------------------------------------------------------------------------
# A candidate that is not serving yet


def at_weight(run: Run, weight: int) -> Plan:
    """Tick until the candidate serves ``weight`` and the engine has moved past that setWeight step."""
    return run.until(lambda p: run.world.candidate_weight == weight and "WeightSet" in reasons(p))


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
        # The deployment's watch says when it serves; the clock wakes it only for the progress deadline.
        deadline_in = (plan.status.waiting_since + dt.timedelta(seconds=spec.progress_deadline_s)  # type: ignore[operator]
                       - run.now).total_seconds()
        assert plan.requeue_after == pytest.approx(min(ACTIVE_REQUEUE_CAP_S, deadline_in + 1.0))
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
