"""``decide``: one pure function from (spec, status, observations, clock) to a Plan.

A tick, as the handler runs it:
1. observe the target (``TargetObservation``) and read the action annotation;
2. run the checks ``planned_checks(spec, status, now)`` names (metric and window), if any;
3. ``plan = decide(spec, generation, status, observations, now)``;
4. write ``plan.status``, then apply ``plan.traffic``, then post ``plan.events``, remove the action
   annotation if ``plan.clear_action``, and come back after ``plan.requeue_after`` seconds.
Everything the engine needs to remember lives in the status it returns, so replaying a tick from a
persisted status gives the same Plan, and a restarted operator resumes exactly where it was. Because
status is written before traffic, a decision interrupted between the two writes is completed by the
next tick: an ended revision stays ended (``revisions.end_state``), a started promotion goes on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from ..api import Phase, RolloutSpec, SpecError
from ..status import ConditionType, Reason, RolloutStatus
from . import actions, gate, promotion, revisions, steps
from .context import (
    ACTIVE_PHASES,
    ACTIVE_REQUEUE_CAP_S,
    MIN_REQUEUE_S,
    Observations,
    Plan,
    Tick,
    seconds_between,
    step_label,
    whole_seconds,
)
from .strategy import strategy_of

_TARGET_REASONS = (Reason.TARGET_NOT_FOUND, Reason.STABLE_PREDICTOR_NOT_FOUND)
_OWNER_REASONS = (Reason.TARGET_OWNED_BY_ANOTHER, Reason.CANDIDATE_NAME_TAKEN)


def decide(spec: RolloutSpec | SpecError, generation: int, status: RolloutStatus, obs: Observations,
           now: dt.datetime) -> Plan:
    """Decide what to do this tick. Pure: same inputs, same Plan."""
    now = whole_seconds(now)  # the status stores whole seconds; so does every decision
    tick = Tick(generation=generation, obs=obs, now=now, initial=status,
                status=replace(status, observed_generation=generation))
    if isinstance(spec, SpecError):
        revisions.invalid_spec(tick, spec)
        if obs.action:
            actions.reject(tick, obs.action, "the spec is invalid")
        return tick.plan()
    running = status.phase in ACTIVE_PHASES and status.revision > 0
    names_refused = revisions.names_edit(spec, status) if running else ""
    acting = revisions.recorded_names(spec, status) if running else spec
    if obs.deleting:
        _deleting(tick, acting)
        return tick.plan()
    if obs.refused and running:
        revisions.roll_back(tick, Phase.FAILED, Reason.TRAFFIC_REFUSED,
                            f"Failed: {obs.refused}; the candidate {status.candidate_version} is taken away and "
                            "nothing is asked again until the spec or the target changes.")
        return tick.plan()
    cause = revisions.restart_cause(spec, tick.status)
    if cause:
        acting = spec
        if not revisions.start_revision(tick, spec, cause):
            return tick.plan()
    phase = tick.status.phase
    if phase is not None and phase.terminal:
        if obs.action and not actions.terminal_action(tick, spec, obs.action):
            return tick.plan()
        if tick.status.phase is not None and tick.status.phase.terminal:
            revisions.mark_spec_valid(tick, spec)
            revisions.end_state(tick, spec)
            return tick.plan()
        acting = spec
    _active(tick, acting, names_refused)
    return tick.plan()


def _deleting(tick: Tick, spec: RolloutSpec) -> None:
    """The ModelRollout is being deleted: an active revision rolls its candidate back first."""
    if tick.status.phase in ACTIVE_PHASES and tick.status.revision > 0:
        revisions.roll_back(tick, Phase.ABORTED, Reason.DELETED,
                            f"The ModelRollout is being deleted: rolled back {spec.candidate.version}; stable "
                            f"predictor {spec.stable_predictor} takes all traffic.",
                            restore_model_uri=tick.status.stable_model_uri if tick.status.promotion_started_at
                            else "", restore_version=tick.status.stable_version)
    elif tick.status.phase is not None and tick.status.phase.terminal:
        revisions.end_state(tick, spec)
    if tick.obs.action:
        actions.reject(tick, tick.obs.action, "the ModelRollout is being deleted")


def _active(tick: Tick, spec: RolloutSpec, names_refused: str) -> None:
    target = tick.target
    if names_refused:
        _refuse_names_edit(tick, names_refused)
    if not target.ready:
        _target_unavailable(tick, spec)
        _pending_action(tick, spec, allowed=("pause", "resume", "abort", "retry"))
        return
    if _foreign(tick, spec):
        _pending_action(tick, spec, allowed=("pause", "resume", "retry"))
        return
    _target_available(tick, spec, names_refused)
    if target.stable_model_uri == spec.candidate.model_uri and tick.status.promotion_started_at is None:
        revisions.fail_candidate_is_stable(tick, spec)
        return
    steps.track_serving(tick, spec)
    if target.candidate_ours and not target.serving and tick.status.phase in (Phase.PROGRESSING, Phase.PAUSED):
        _hold_until_serving(tick, spec)
        return
    if tick.status.waiting_since is not None:
        tick.update(waiting_since=None)  # serving again: the progress deadline no longer runs
    if not tick.fresh_revision:
        reason, message = gate.record_checks(tick, spec)
        if reason is not None:
            revisions.roll_back(tick, Phase.ROLLED_BACK, reason, message)
            return
    if tick.status.phase in (Phase.PROGRESSING, Phase.PAUSED):
        revisions.check_steps_edit(tick, spec)
    _pending_action(tick, spec)
    phase = tick.status.phase
    if phase is Phase.PROGRESSING:
        strategy_of(spec).progress(tick, spec)
    elif phase is Phase.PAUSED:
        strategy_of(spec).paused(tick, spec)
    elif phase is Phase.PROMOTING:
        promotion.promote(tick, spec)
    if tick.status.phase in ACTIVE_PHASES:
        _wake_for_analysis(tick, spec)


def _pending_action(tick: Tick, spec: RolloutSpec, allowed: tuple[str, ...] | None = None) -> None:
    action = tick.obs.action
    if not action or tick.clear_action:  # none, or a retry that started this revision
        return
    if allowed is not None and action not in allowed:
        actions.reject(tick, action, "the target is not available to this rollout")
        return
    actions.active_action(tick, spec, action)


def _foreign(tick: Tick, spec: RolloutSpec) -> bool:
    """Another rollout owns the traffic of this stable predictor, or the candidate's name is taken by a
    predictor this rollout did not create: refuse, and never write to the target."""
    target = tick.target
    if target.foreign_owner:
        reason = Reason.TARGET_OWNED_BY_ANOTHER
        message = (f"ModelRollout {target.foreign_owner} is rolling out a candidate on stable predictor "
                   f"{spec.stable_predictor} of {spec.target.name}; this rollout waits and changes nothing "
                   "until that one ends")
    elif target.candidate_present and not target.candidate_owned:
        reason = Reason.CANDIDATE_NAME_TAKEN
        message = (f"predictor {spec.candidate.predictor_name} already exists in {spec.target.name} and was not "
                   "created by this rollout; it is left alone. Set spec.candidate.predictorName to a free name")
    else:
        return False
    previous = tick.status.condition(ConditionType.SPEC_VALID)
    if previous is None or previous.reason != reason:
        tick.emit("Warning", reason, f"{message[0].upper()}{message[1:]}.")
    tick.condition(ConditionType.SPEC_VALID, "False", reason, message)
    tick.condition(ConditionType.PROGRESSING, "False", reason, message)
    tick.update(message=f"Refused: {message}", candidate_weight=0, candidate_mirror=0, weight_since=None)
    tick.requeue_after = ACTIVE_REQUEUE_CAP_S
    return True


def _refuse_names_edit(tick: Tick, message: str) -> None:
    previous = tick.status.condition(ConditionType.SPEC_VALID)
    if previous is None or previous.reason != Reason.NAMES_LOCKED:
        tick.emit("Warning", Reason.NAMES_LOCKED, f"Refused a spec edit: {message}.")
    tick.condition(ConditionType.SPEC_VALID, "False", Reason.NAMES_LOCKED, message)


def _hold_until_serving(tick: Tick, spec: RolloutSpec) -> None:
    """The candidate is not serving yet: neither analyse it (no data is not a verdict) nor go on.

    A target that reports Failed (a model that cannot load, say) is rolled back: it will not serve.
    """
    target = tick.target
    detail = target.describe_readiness()
    if target.failed:
        revisions.roll_back(tick, Phase.ROLLED_BACK, Reason.TARGET_FAILED,
                            f"Rolled back {spec.candidate.version}: {spec.target.kind} {spec.target.name} "
                            f"reports {detail}.")
        return
    since = tick.status.waiting_since or tick.now
    waited = seconds_between(since, tick.now)
    if waited > spec.progress_deadline_s:
        revisions.roll_back(tick, Phase.ROLLED_BACK, Reason.PROGRESS_DEADLINE_EXCEEDED,
                            f"Rolled back {spec.candidate.version}: {spec.target.kind} {spec.target.name} has not "
                            f"served it for {waited:.0f}s (progressDeadline {spec.progress_deadline_s:g}s; {detail}).")
        return
    _pending_action(tick, spec)
    if tick.status.phase in (Phase.PROGRESSING, Phase.PAUSED):
        deadline = since + dt.timedelta(seconds=spec.progress_deadline_s)
        # No countdown in the message (a status write a second for nothing): the deadline's time instead.
        tick.update(waiting_since=since,
                    message=f"Waiting for {spec.target.kind} {spec.target.name} to serve {spec.candidate.version} "
                            f"({detail}; progressDeadline {spec.progress_deadline_s:g}s, until "
                            f"{deadline.strftime('%H:%M:%SZ')}); steps, pause clocks and analysis resume once it "
                            "serves.")
        # The deployment's watch wakes the rollout when it serves; the clock only at the deadline.
        tick.wake_within(seconds_between(tick.now, deadline) + MIN_REQUEUE_S)


def _target_unavailable(tick: Tick, spec: RolloutSpec) -> None:
    target = tick.target
    if not target.exists:
        reason = Reason.TARGET_NOT_FOUND
        message = target.error or f"{spec.target.kind} {spec.target.name} not found"
    else:
        reason = Reason.STABLE_PREDICTOR_NOT_FOUND
        message = target.error or (f"stable predictor {spec.stable_predictor!r} not found in "
                                   f"{spec.target.kind} {spec.target.name}")
    message = f"{message[0].upper()}{message[1:]}; traffic stays as it is and the operator keeps looking."
    previous = tick.status.condition(ConditionType.PROGRESSING)
    if previous is None or previous.reason != reason:
        tick.emit("Warning", reason, message)
    tick.condition(ConditionType.PROGRESSING, "False", reason, message)
    tick.condition(ConditionType.SPEC_VALID, "False", reason, message)
    tick.update(message=f"Waiting: {message}", weight_since=None)
    tick.requeue_after = ACTIVE_REQUEUE_CAP_S


def _target_available(tick: Tick, spec: RolloutSpec, names_refused: str) -> None:
    previous = tick.status.condition(ConditionType.PROGRESSING)
    if previous is not None and previous.reason in (*_TARGET_REASONS, *_OWNER_REASONS):
        tick.emit("Normal", Reason.TARGET_FOUND,
                  f"{spec.target.kind} {spec.target.name} and its stable predictor {spec.stable_predictor} are "
                  f"available to this rollout; continuing at step {step_label(spec, tick.status.step_index)}.")
        tick.condition(ConditionType.PROGRESSING, "True", Reason.TARGET_FOUND, "The target is available again.")
    if not names_refused:
        tick.condition(ConditionType.SPEC_VALID, "True", Reason.SPEC_ACCEPTED, "The spec is valid.")
    if not tick.status.stable_version and tick.target.stable_version:
        tick.update(stable_version=tick.target.stable_version)  # the target was missing at the start
    if not tick.status.stable_model_uri and tick.status.promotion_started_at is None:
        tick.update(stable_model_uri=tick.target.stable_model_uri)


def _wake_for_analysis(tick: Tick, spec: RolloutSpec) -> None:
    tick.wake_within(min(ACTIVE_REQUEUE_CAP_S, spec.analysis.interval_s))
    due = gate.next_due(spec, tick.status)
    if due is not None:
        tick.wake_within(seconds_between(tick.now, due))
