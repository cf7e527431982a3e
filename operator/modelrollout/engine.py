"""The rollout state machine: one pure function from (spec, status, observations, clock) to a Plan.

A tick, as the handler runs it:
1. observe the SeldonDeployment (``TargetObservation``) and read the action annotation;
2. run the metrics ``metrics_due(spec, status, now)`` names (``analysis.run_checks``), if any;
3. ``plan = decide(spec, generation, status, observations, now)``;
4. apply ``plan.traffic`` (if any), patch ``plan.status``, post ``plan.events``, remove the action
   annotation if ``plan.clear_action``, and come back after ``plan.requeue_after`` seconds.
Everything the engine needs to remember lives in the status it returns, so replaying a tick from a
persisted status gives the same Plan, and an operator restart resumes exactly where it was. A traffic
change that was lost (crash, conflict) is simply asked for again: steps complete on observation only.

Choices worth knowing:
- A setWeight step completes when the *observed* candidate weight equals the step's weight; until then
  the engine asks for the change again every tick (a desired state, so repeating it is harmless).
- Background analysis runs every interval while the candidate has traffic, in Progressing *and* Paused:
  a candidate left at 50% over lunch is still watched and still rolled back.
- A new candidate while a rollout runs ends that revision ("Superseded") and, if the old candidate
  predictor is still there, first takes its traffic away; the new revision then starts from step 0.
- A candidate whose modelUri the stable predictor already serves fails the revision (CandidateIsStable).
- An unparseable spec fails the rollout and leaves traffic as it is (without a readable spec the engine
  cannot name the predictors to move); the next valid generation starts a new revision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .analysis.result import CheckResult
from .api import Metric, Phase, RolloutSpec, SpecError, Step, StepKind
from .status import (
    AnalysisStatus,
    CheckRecord,
    Condition,
    ConditionType,
    HistoryEntry,
    RolloutStatus,
    Verdict,
    set_condition,
    utc,
)

ACTIONS = ("pause", "resume", "promote", "abort", "retry")
ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})

ACTIVE_REQUEUE_CAP_S = 5.0  # how long an active rollout may go unobserved
APPLY_REQUEUE_S = 1.0  # after asking for a traffic change: look again soon to confirm it
MIN_REQUEUE_S = 1.0
TERMINAL_REQUEUE_S = 30.0

_TARGET_REASONS = ("TargetNotFound", "StablePredictorNotFound")


@dataclass(frozen=True)
class TargetObservation:
    """What the handler saw on the SeldonDeployment this tick."""

    exists: bool
    stable_present: bool = False
    stable_model_uri: str = ""  # graph.modelUri of the stable predictor's root node
    stable_version: str = ""  # best-effort version label of the stable model
    candidate_present: bool = False
    candidate_weight: int = 0  # traffic of the candidate predictor (0 if absent)
    error: str = ""  # why the target or the stable predictor is not usable, in words
    # graph.modelUri of the candidate predictor ("" = not reported); lets the engine notice a predictor
    # left over from an earlier candidate that still serves the old model.
    candidate_model_uri: str = ""
    # What the deployment's controller reports: Seldon's status.state ("" when no controller writes one).
    # Creating means some predictor has no ready server yet, so the candidate's metrics would be thin.
    state: str = ""
    state_message: str = ""

    @property
    def serving(self) -> bool:
        """Every predictor can answer (or nothing says otherwise)."""
        return self.state not in ("Creating", "Failed")

    @property
    def ready(self) -> bool:
        return self.exists and self.stable_present


@dataclass(frozen=True)
class Observations:
    target: TargetObservation
    checks: tuple[CheckResult, ...] | None = None  # metrics the handler ran this tick; None: none ran
    action: str | None = None  # manual action requested through the action annotation
    provider_error: str = ""  # configuration/infrastructure problem while running the metrics


@dataclass(frozen=True)
class TrafficChange:
    """The traffic the backend must make true (a desired state, idempotent, never a delta)."""

    kind: Literal["weight", "promote", "rollback"]
    candidate_weight: int = 0  # for "weight": candidate gets this, stable 100 - this


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    status: RolloutStatus
    traffic: TrafficChange | None = None
    events: tuple[Event, ...] = ()
    requeue_after: float = ACTIVE_REQUEUE_CAP_S
    clear_action: bool = False  # the action annotation was acted on or rejected: remove it


# --------------------------------------------------------------------------------------------------
# Which metrics are due


def metrics_due(spec: RolloutSpec, status: RolloutStatus, now: dt.datetime) -> tuple[Metric, ...]:
    """The metrics the handler must run before calling ``decide`` this tick (empty: none are due)."""
    now = _whole_seconds(now)
    if status.phase not in ACTIVE_PHASES or not spec.analysis.metrics:
        return ()
    names: list[str] = []
    step = _current_step(spec, status)
    if status.phase is Phase.PROGRESSING and step is not None and step.kind is StepKind.ANALYSIS \
            and _analysis_step_due(spec, status, now):
        names.extend(_step_metric_names(spec, step))
    if _background_active(status) and now >= _next_background_at(spec, status):
        names.extend(m.name for m in spec.analysis.metrics)
    wanted = set(names)
    return tuple(m for m in spec.analysis.metrics if m.name in wanted)


def _analysis_step_due(spec: RolloutSpec, status: RolloutStatus, now: dt.datetime) -> bool:
    return now >= _analysis_step_due_at(spec, status, now)


def _analysis_step_due_at(spec: RolloutSpec, status: RolloutStatus, now: dt.datetime) -> dt.datetime:
    last = status.analysis.last_run_at
    started = status.step_started_at
    if last is None or started is None or last <= started:
        return now  # nothing has run since the step began
    return last + dt.timedelta(seconds=spec.analysis.interval_s)


def _background_active(status: RolloutStatus) -> bool:
    # Analysis watches a candidate that serves traffic, and keeps running while a promotion waits for a
    # pass (otherwise a rollout blocked on one inconclusive check would wait forever).
    if status.phase in (Phase.PROGRESSING, Phase.PAUSED):
        return status.candidate_weight > 0 or _gate_blocked(status.analysis)
    return status.phase is Phase.PROMOTING and _gate_blocked(status.analysis)


def _next_background_at(spec: RolloutSpec, status: RolloutStatus) -> dt.datetime:
    # The first run comes one interval after the revision started, so its window holds candidate traffic.
    base = status.analysis.last_run_at or status.started_at or dt.datetime.min.replace(tzinfo=dt.UTC)
    return base + dt.timedelta(seconds=spec.analysis.interval_s)


def _gate_blocked(analysis: AnalysisStatus) -> bool:
    """A failed or inconclusive latest analysis is outstanding: no promotion until a clean pass."""
    return (analysis.consecutive_failures > 0 or analysis.consecutive_inconclusive > 0
            or any(c.verdict is not Verdict.PASS for c in analysis.last_checks))


# --------------------------------------------------------------------------------------------------
# The tick


@dataclass
class _Tick:
    """Mutable scratch pad for one decide call; only ever turned into an immutable Plan."""

    generation: int
    obs: Observations
    now: dt.datetime
    initial: RolloutStatus  # as persisted: what the handler based metrics_due on
    status: RolloutStatus
    fresh_revision: bool = False  # a revision started this tick: results gathered before belong to the old one
    events: list[Event] = field(default_factory=list)
    traffic: TrafficChange | None = None
    requeue_after: float = ACTIVE_REQUEUE_CAP_S
    clear_action: bool = False

    def emit(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def condition(self, type_: ConditionType, status: str, reason: str, message: str) -> None:
        new = Condition(type=str(type_), status=status, reason=reason, message=message,
                        observed_generation=self.generation)
        self.status = replace(self.status, conditions=set_condition(self.status.conditions, new, self.now))

    def update(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)

    def wake_within(self, seconds: float) -> None:
        self.requeue_after = min(self.requeue_after, max(MIN_REQUEUE_S, seconds))

    def plan(self) -> Plan:
        return Plan(status=self.status, traffic=self.traffic, events=tuple(self.events),
                    requeue_after=self.requeue_after, clear_action=self.clear_action)


def decide(spec: RolloutSpec | SpecError, generation: int, status: RolloutStatus, obs: Observations,
           now: dt.datetime) -> Plan:
    """Decide what to do this tick. Pure: same inputs, same Plan."""
    now = _whole_seconds(now)  # the status stores whole seconds; so does every decision
    tick = _Tick(generation=generation, obs=obs, now=now, initial=status,
                 status=replace(status, observed_generation=generation))
    if isinstance(spec, SpecError):
        _invalid_spec(tick, spec)
        return tick.plan()
    tick.update(candidate_weight=obs.target.candidate_weight if obs.target.exists else 0)
    cause = _restart_cause(spec, tick.status)
    if cause and not _start_revision(tick, spec, cause):
        return tick.plan()
    phase = tick.status.phase
    if phase is not None and phase.terminal:
        if obs.action and not _terminal_action(tick, spec, obs.action):
            return tick.plan()
        if tick.status.phase is not None and tick.status.phase.terminal:
            _mark_spec_valid(tick, spec)
            _assert_end_state(tick, spec)
            return tick.plan()
    _active(tick, spec)
    return tick.plan()


def _whole_seconds(now: dt.datetime) -> dt.datetime:
    return utc(now).replace(microsecond=0)


def _restart_cause(spec: RolloutSpec, status: RolloutStatus) -> str:
    """Why this tick starts a new revision ("" when it does not)."""
    if status.phase is None or status.phase is Phase.IDLE:
        return "new rollout"
    spec_valid = status.condition(ConditionType.SPEC_VALID)
    if status.phase is Phase.FAILED and spec_valid is not None and spec_valid.reason == "InvalidSpec":
        return "spec fixed"
    if (spec.candidate.version, spec.candidate.model_uri) != (status.candidate_version,
                                                               status.candidate_model_uri):
        return "new candidate"
    return ""


# --------------------------------------------------------------------------------------------------
# Revisions and terminal phases


def _start_revision(tick: _Tick, spec: RolloutSpec, cause: str) -> bool:
    """Start a new revision; False when this tick must stop here (failed at once, or clearing traffic)."""
    old = tick.status
    superseded = old.phase is not None and not old.phase.terminal and old.revision > 0
    if superseded:
        tick.status = old.with_history(HistoryEntry(
            revision=old.revision, version=old.candidate_version, model_uri=old.candidate_model_uri,
            result="Superseded", reason=f"candidate changed to {spec.candidate.version}",
            started_at=old.started_at, finished_at=tick.now))
    target = tick.obs.target
    revision = old.revision + 1
    tick.fresh_revision = True
    tick.update(
        phase=Phase.PROGRESSING, revision=revision, candidate_version=spec.candidate.version,
        candidate_model_uri=spec.candidate.model_uri,
        stable_version=target.stable_version or old.stable_version, step_index=0,
        step_started_at=tick.now, started_at=tick.now, finished_at=None, analysis=AnalysisStatus(),
        waiting_since=None, message=f"Revision {revision}: rolling out {spec.candidate.version}")
    tick.condition(ConditionType.SPEC_VALID, "True", "SpecAccepted", "The spec is valid.")
    tick.condition(ConditionType.COMPLETED, "False", "InProgress", f"Revision {revision} is in progress.")
    tick.condition(ConditionType.HEALTHY, "Unknown", "NotYetAnalysed",
                   f"No analysis has run for revision {revision} yet.")
    tick.condition(ConditionType.PROGRESSING, "True", "RolloutStarted",
                   f"Revision {revision} started ({cause}).")
    replacing = f", replacing stable {tick.status.stable_version}" if tick.status.stable_version else ""
    tick.emit("Normal", "RolloutStarted",
              f"Started revision {revision} ({cause}): rolling out {spec.candidate.version} "
              f"({spec.candidate.model_uri}) as predictor {spec.candidate.predictor_name} "
              f"in {len(spec.steps)} steps{replacing}.")
    if target.ready and target.stable_model_uri == spec.candidate.model_uri:
        _fail_candidate_is_stable(tick, spec)
        return False
    if superseded and target.ready and target.candidate_present:
        tick.traffic = TrafficChange("rollback")
        tick.requeue_after = APPLY_REQUEUE_S
        tick.emit("Normal", "CandidateReset",
                  f"Removing the candidate predictor of superseded revision {old.revision} "
                  f"({old.candidate_version}) before revision {revision} starts.")
        tick.update(message=f"Revision {revision}: clearing the previous candidate before step 1")
        return False
    tick.emit("Normal", "StepStarted", _step_started_message(spec, 0))
    return True


def _finish(tick: _Tick, phase: Phase, reason: str, message: str) -> None:
    """Move to a terminal phase and record the revision in the history."""
    status = tick.status
    tick.status = status.with_history(HistoryEntry(
        revision=status.revision, version=status.candidate_version, model_uri=status.candidate_model_uri,
        result=str(phase), reason=reason, started_at=status.started_at, finished_at=tick.now))
    tick.update(phase=phase, finished_at=tick.now, message=message)
    tick.condition(ConditionType.PROGRESSING, "False", reason, message)
    tick.condition(ConditionType.COMPLETED, "True", str(phase), message)
    tick.requeue_after = TERMINAL_REQUEUE_S


def _roll_back(tick: _Tick, phase: Phase, reason: str, message: str) -> None:
    _finish(tick, phase, reason, message)
    if tick.obs.target.ready:
        tick.traffic = TrafficChange("rollback")
        tick.requeue_after = APPLY_REQUEUE_S
        # The handler writes this status only once the rollback is applied: the candidate then has 0%.
        tick.status = replace(tick.status, candidate_weight=0)
    tick.emit("Warning", str(phase), message)


def _fail_candidate_is_stable(tick: _Tick, spec: RolloutSpec) -> None:
    message = (f"Nothing to roll out: stable predictor {spec.stable_predictor} already serves "
               f"{spec.candidate.model_uri}; set spec.candidate to a different model.")
    _finish(tick, Phase.FAILED, "CandidateIsStable", message)
    tick.condition(ConditionType.SPEC_VALID, "False", "CandidateIsStable", message)
    tick.emit("Warning", "CandidateIsStable", message)
    if tick.obs.target.ready and tick.obs.target.candidate_present:
        tick.traffic = TrafficChange("rollback")


def _invalid_spec(tick: _Tick, error: SpecError) -> None:
    """Fail an unstarted or running rollout; a finished one keeps its result and only reports the spec."""
    status = tick.status
    message = f"The spec is invalid and nothing will change until it is fixed: {error}"
    old = status.condition(ConditionType.SPEC_VALID)
    if old is None or old.reason != "InvalidSpec" or old.message != message:
        tick.emit("Warning", "InvalidSpec", message)
    if status.phase in ACTIVE_PHASES and status.revision > 0:
        _finish(tick, Phase.FAILED, "InvalidSpec", message)
    elif status.phase in (None, Phase.IDLE, *ACTIVE_PHASES):
        tick.update(phase=Phase.FAILED, message=message)
        tick.condition(ConditionType.PROGRESSING, "False", "InvalidSpec", message)
        tick.condition(ConditionType.COMPLETED, "True", "Failed", message)
    tick.condition(ConditionType.SPEC_VALID, "False", "InvalidSpec", message)
    tick.requeue_after = TERMINAL_REQUEUE_S
    if tick.obs.action:
        _reject_action(tick, tick.obs.action, "the spec is invalid")


def _mark_spec_valid(tick: _Tick, spec: RolloutSpec) -> None:
    """A finished rollout whose spec was invalid for a while reports it valid again (result unchanged)."""
    old = tick.status.condition(ConditionType.SPEC_VALID)
    if old is not None and old.reason == "InvalidSpec":
        tick.condition(ConditionType.SPEC_VALID, "True", "SpecAccepted", "The spec is valid.")
        tick.emit("Normal", "SpecValid", f"The spec is valid again; the rollout of "
                  f"{spec.candidate.version} stays {tick.status.phase}.")


def _assert_end_state(tick: _Tick, spec: RolloutSpec) -> None:
    """Keep a finished rollout finished: a candidate that reappears after a rollback is removed again."""
    tick.requeue_after = TERMINAL_REQUEUE_S
    target = tick.obs.target
    if target.ready and tick.status.phase is not Phase.SUCCEEDED:
        tick.status = replace(tick.status, candidate_weight=0)  # what the rollback below makes true
    if tick.status.phase is not Phase.SUCCEEDED and target.ready and target.candidate_present:
        tick.traffic = TrafficChange("rollback")
        tick.requeue_after = ACTIVE_REQUEUE_CAP_S


# --------------------------------------------------------------------------------------------------
# Manual actions


def _terminal_action(tick: _Tick, spec: RolloutSpec, action: str) -> bool:
    """Handle an action in a terminal phase; False when this tick must stop here."""
    if action == "retry" and tick.status.phase is not Phase.SUCCEEDED:
        tick.update(last_handled_action=action)
        tick.clear_action = True
        return _start_revision(tick, spec, "retry requested")
    _reject_action(tick, action, f"the rollout already ended ({tick.status.phase})")
    return True


def _reject_action(tick: _Tick, action: str, why: str) -> None:
    tick.clear_action = True
    if action == tick.status.last_handled_action and action in ACTIONS:
        return  # the same request seen again before its annotation was removed: nothing new to say
    if action not in ACTIONS:
        tick.emit("Warning", "InvalidAction",
                  f"Ignored unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    else:
        tick.emit("Warning", "ActionRejected", f"Ignored action {action!r}: {why}.")


def _active_action(tick: _Tick, spec: RolloutSpec, action: str) -> None:
    """Act on a manual action while the rollout runs, or reject it with a Warning; either way clear it."""
    handler = _ACTION_HANDLERS.get(action)
    refusal = handler(tick, spec) if handler else f"the rollout is {tick.status.phase}"
    if refusal:
        _reject_action(tick, action, refusal)
        return
    tick.update(last_handled_action=action)
    tick.clear_action = True


def _pause_action(tick: _Tick, spec: RolloutSpec) -> str:
    if tick.status.phase is not Phase.PROGRESSING:
        return f"the rollout is {tick.status.phase}"
    tick.update(phase=Phase.PAUSED)
    tick.emit("Normal", "Paused", f"Paused the rollout of {spec.candidate.version} at step "
              f"{_step_label(spec, tick.status.step_index)} on request; traffic stays as it is.")
    return ""


def _resume_action(tick: _Tick, spec: RolloutSpec) -> str:
    if tick.status.phase is not Phase.PAUSED:
        return f"the rollout is {tick.status.phase}, not Paused"
    tick.update(phase=Phase.PROGRESSING)
    tick.emit("Normal", "Resumed", f"Resumed the rollout of {spec.candidate.version} on request.")
    tick.condition(ConditionType.PROGRESSING, "True", "Resumed", "Resumed on request.")
    step = _current_step(spec, tick.status)
    if step is not None and step.kind is StepKind.PAUSE and step.duration_s is None:
        _advance(tick, spec)  # resuming is what ends a pause step without a duration
    return ""


def _promote_action(tick: _Tick, spec: RolloutSpec) -> str:
    if tick.status.phase is Phase.PROMOTING:
        return "the candidate is already being promoted"
    if _gate_blocked(tick.status.analysis):
        return f"the latest analysis did not pass ({_gate_summary(tick.status)})"
    skipped = len(spec.steps) - tick.status.step_index
    tick.emit("Normal", "PromotionRequested",
              f"Promoting {spec.candidate.version} on request, skipping {skipped} remaining step(s).")
    _begin_promotion(tick, spec)
    return ""


def _abort_action(tick: _Tick, spec: RolloutSpec) -> str:
    if tick.status.phase is Phase.PROMOTING:
        return "the promotion is already under way and cannot be undone"
    _roll_back(tick, Phase.ABORTED, "Aborted", f"Aborted the rollout of {spec.candidate.version} on request; "
               f"stable predictor {spec.stable_predictor} takes all traffic.")
    return ""


def _retry_action(tick: _Tick, spec: RolloutSpec) -> str:
    return f"the rollout is still {tick.status.phase}; retry applies after RolledBack, Aborted or Failed"


_ACTION_HANDLERS: dict[str, Callable[[_Tick, RolloutSpec], str]] = {
    "pause": _pause_action,
    "resume": _resume_action,
    "promote": _promote_action,
    "abort": _abort_action,
    "retry": _retry_action,
}


# --------------------------------------------------------------------------------------------------
# Active phases


def _active(tick: _Tick, spec: RolloutSpec) -> None:
    target = tick.obs.target
    if not target.ready:
        _target_unavailable(tick, spec)
        action = tick.obs.action if not tick.clear_action else None
        if action == "promote":
            _reject_action(tick, action, "the target is not available")
        elif action:
            _active_action(tick, spec, action)
        return
    _target_available(tick, spec)
    if target.stable_model_uri == spec.candidate.model_uri and not _steps_done(spec, tick.status):
        _fail_candidate_is_stable(tick, spec)
        return
    if target.candidate_present and not target.serving and tick.status.phase in (Phase.PROGRESSING, Phase.PAUSED):
        _hold_until_serving(tick, spec)
        return
    if tick.status.waiting_since is not None:
        tick.update(waiting_since=None)  # serving again: the progress deadline no longer runs
    if not tick.fresh_revision and _record_analysis(tick, spec):
        return
    if tick.obs.action and not tick.clear_action:  # a retry that started this revision is handled
        _active_action(tick, spec, tick.obs.action)
    phase = tick.status.phase
    if phase is Phase.PROGRESSING:
        _run_steps(tick, spec)
    elif phase is Phase.PAUSED:
        _paused(tick, spec)
    elif phase is Phase.PROMOTING:
        _promote(tick, spec)
    if tick.status.phase in ACTIVE_PHASES:
        _wake_for_analysis(tick, spec)


def _hold_until_serving(tick: _Tick, spec: RolloutSpec) -> None:
    """The candidate is not serving yet: neither analyse it (no data is not a verdict) nor go on.

    A deployment that reports Failed (a model that cannot load, say) is rolled back: it will not serve.
    """
    target = tick.obs.target
    detail = f"{target.state}" + (f": {target.state_message}" if target.state_message else "")
    if target.state == "Failed":
        _roll_back(tick, Phase.ROLLED_BACK, "TargetFailed",
                   f"Rolled back {spec.candidate.version}: SeldonDeployment {spec.target.name} reports {detail}.")
        return
    since = tick.status.waiting_since or tick.now
    waited = (tick.now - since).total_seconds()
    if waited > spec.progress_deadline_s:
        _roll_back(tick, Phase.ROLLED_BACK, "ProgressDeadlineExceeded",
                   f"Rolled back {spec.candidate.version}: SeldonDeployment {spec.target.name} has not served it "
                   f"for {waited:.0f}s (progressDeadline {spec.progress_deadline_s:g}s; {detail}).")
        return
    if tick.obs.action and not tick.clear_action:
        _active_action(tick, spec, tick.obs.action)
    if tick.status.phase in (Phase.PROGRESSING, Phase.PAUSED):
        tick.update(waiting_since=since,
                    message=f"Waiting for SeldonDeployment {spec.target.name} to serve {spec.candidate.version} "
                            f"({detail}, {waited:.0f}s of progressDeadline {spec.progress_deadline_s:g}s); "
                            "steps and analysis resume once it is Available.")
        tick.requeue_after = APPLY_REQUEUE_S


def _target_unavailable(tick: _Tick, spec: RolloutSpec) -> None:
    target = tick.obs.target
    if not target.exists:
        reason = "TargetNotFound"
        message = target.error or f"SeldonDeployment {spec.target.name} not found"
    else:
        reason = "StablePredictorNotFound"
        message = target.error or (f"stable predictor {spec.stable_predictor!r} not found in "
                                   f"SeldonDeployment {spec.target.name}")
    message = f"{message[0].upper()}{message[1:]}; traffic stays as it is and the operator keeps looking."
    previous = tick.status.condition(ConditionType.PROGRESSING)
    if previous is None or previous.reason != reason:
        tick.emit("Warning", reason, message)
    tick.condition(ConditionType.PROGRESSING, "False", reason, message)
    tick.condition(ConditionType.SPEC_VALID, "False", reason, message)
    tick.update(message=f"Waiting: {message}")
    tick.requeue_after = ACTIVE_REQUEUE_CAP_S


def _target_available(tick: _Tick, spec: RolloutSpec) -> None:
    previous = tick.status.condition(ConditionType.PROGRESSING)
    if previous is not None and previous.reason in _TARGET_REASONS:
        tick.emit("Normal", "TargetFound",
                  f"Found stable predictor {spec.stable_predictor} in SeldonDeployment {spec.target.name}; "
                  f"continuing at step {_step_label(spec, tick.status.step_index)}.")
        tick.condition(ConditionType.PROGRESSING, "True", "TargetFound", "The target is available again.")
    tick.condition(ConditionType.SPEC_VALID, "True", "SpecAccepted", "The spec is valid.")
    if not tick.status.stable_version and tick.obs.target.stable_version:
        tick.update(stable_version=tick.obs.target.stable_version)  # the target was missing at the start


def _wake_for_analysis(tick: _Tick, spec: RolloutSpec) -> None:
    tick.wake_within(min(ACTIVE_REQUEUE_CAP_S, spec.analysis.interval_s))
    if spec.analysis.metrics and _background_active(tick.status):
        tick.wake_within((_next_background_at(spec, tick.status) - tick.now).total_seconds())


# --------------------------------------------------------------------------------------------------
# Analysis results


def _record_analysis(tick: _Tick, spec: RolloutSpec) -> bool:
    """Fold this tick's check results into the status; True when they rolled the candidate back."""
    obs = tick.obs
    # A provider error counts only on a tick that was meant to run metrics, however often it is reported.
    provider_error = obs.provider_error if (obs.checks is not None
                                            or metrics_due(spec, tick.initial, tick.now)) else ""
    checks = obs.checks or ()
    if not checks and not provider_error:
        return False
    verdicts = {c.verdict for c in checks}
    failed = Verdict.FAIL in verdicts
    inconclusive = not failed and (Verdict.INCONCLUSIVE in verdicts or bool(provider_error))
    before = tick.status.analysis
    analysis = AnalysisStatus(
        consecutive_failures=before.consecutive_failures + 1 if failed else (
            before.consecutive_failures if inconclusive else 0),
        consecutive_inconclusive=before.consecutive_inconclusive + 1 if inconclusive else (
            before.consecutive_inconclusive if failed else 0),
        last_run_at=tick.now,
        last_checks=tuple(c.to_record(tick.now) for c in checks),
    )
    tick.update(analysis=analysis)
    limits = spec.analysis
    if failed:
        detail = _describe(checks, Verdict.FAIL)
        tick.condition(ConditionType.HEALTHY, "False", "ChecksFailed", detail)
        if analysis.consecutive_failures >= limits.failure_limit:
            _roll_back(tick, Phase.ROLLED_BACK, "AnalysisFailed",
                       f"Rolled back {spec.candidate.version}: {detail}, for "
                       f"{analysis.consecutive_failures} consecutive checks (failureLimit {limits.failure_limit}).")
            return True
        tick.emit("Warning", "AnalysisFailed",
                  f"Analysis of {spec.candidate.version} failed ({analysis.consecutive_failures} in a row; "
                  f"rollback at {limits.failure_limit}): {detail}.")
    elif inconclusive:
        detail = "; ".join(filter(None, [provider_error, _describe(checks, Verdict.INCONCLUSIVE)]))
        reason = "ProviderError" if provider_error else "ChecksInconclusive"
        tick.condition(ConditionType.HEALTHY, "Unknown", reason, detail)
        if analysis.consecutive_inconclusive >= limits.inconclusive_limit:
            _roll_back(tick, Phase.ROLLED_BACK, "AnalysisInconclusive",
                       f"Rolled back {spec.candidate.version}: analysis was inconclusive for "
                       f"{analysis.consecutive_inconclusive} consecutive checks (inconclusiveLimit "
                       f"{limits.inconclusive_limit}) and no data is never a pass; latest: {detail}.")
            return True
        tick.emit("Warning", "AnalysisInconclusive",
                  f"Analysis of {spec.candidate.version} was inconclusive ({analysis.consecutive_inconclusive} in a "
                  f"row; rollback at {limits.inconclusive_limit}): {detail}.")
    else:
        previous = tick.status.condition(ConditionType.HEALTHY)
        if previous is not None and previous.status != "True":
            tick.emit("Normal", "AnalysisPassed",
                      f"All {len(checks)} checks of {spec.candidate.version} passed.")
        tick.condition(ConditionType.HEALTHY, "True", "ChecksPassed", _describe(checks, Verdict.PASS))
    return False


def _describe(checks: tuple[CheckResult, ...], verdict: Verdict) -> str:
    return "; ".join(c.message for c in checks if c.verdict is verdict)


def _gate_summary(status: RolloutStatus) -> str:
    records: tuple[CheckRecord, ...] = status.analysis.last_checks
    messages = [r.message for r in records if r.verdict is not Verdict.PASS]
    if messages:
        return "; ".join(messages)
    counts = status.analysis
    return (f"{counts.consecutive_failures} failed and {counts.consecutive_inconclusive} inconclusive "
            "checks in a row")


# --------------------------------------------------------------------------------------------------
# Steps


def _run_steps(tick: _Tick, spec: RolloutSpec) -> None:
    """Work through steps until one has to wait; at most one pass over the list per tick."""
    entered_now = tick.fresh_revision
    for _ in range(len(spec.steps) + 1):
        step = _current_step(spec, tick.status)
        if step is None:
            _steps_finished(tick, spec)
            return
        if step.kind is StepKind.SET_WEIGHT:
            done = _set_weight_step(tick, spec, step)
        elif step.kind is StepKind.PAUSE:
            done = _pause_step(tick, spec, step)
        else:
            done = _analysis_step(tick, spec, step, entered_now)
        if not done:
            return
        _advance(tick, spec)
        entered_now = True


def _advance(tick: _Tick, spec: RolloutSpec) -> None:
    index = tick.status.step_index + 1
    tick.update(step_index=index, step_started_at=tick.now)
    tick.condition(ConditionType.PROGRESSING, "True", "StepAdvanced",
                   f"Step {_step_label(spec, index)} started.")
    if index < len(spec.steps):
        tick.emit("Normal", "StepStarted", _step_started_message(spec, index))


def _set_weight_step(tick: _Tick, spec: RolloutSpec, step: Step) -> bool:
    weight = step.weight or 0
    if _weight_in_place(tick.obs, spec, weight):
        tick.emit("Normal", "WeightSet",
                  f"Candidate {spec.candidate.version} now serves {weight}% of traffic "
                  f"(stable {spec.stable_predictor} {100 - weight}%).")
        return True
    tick.traffic = TrafficChange("weight", weight)
    tick.wake_within(APPLY_REQUEUE_S)
    tick.update(message=f"Step {_step_label(spec, tick.status.step_index)}: shifting {weight}% of "
                        f"traffic to {spec.candidate.version}")
    return False


def _pause_step(tick: _Tick, spec: RolloutSpec, step: Step) -> bool:
    label = _step_label(spec, tick.status.step_index)
    if step.duration_s is None:
        _hold_weight(tick, spec)
        tick.update(phase=Phase.PAUSED)
        _paused(tick, spec)
        return False
    started = tick.status.step_started_at or tick.now
    ends = started + dt.timedelta(seconds=step.duration_s)
    if tick.now >= ends:
        return True
    _hold_weight(tick, spec)
    remaining = (ends - tick.now).total_seconds()
    tick.wake_within(remaining)
    tick.update(message=f"Step {label}: pausing, {remaining:g}s left, candidate "
                        f"{spec.candidate.version} at {_desired_weight(spec, tick.status.step_index)}%")
    return False


def _analysis_step(tick: _Tick, spec: RolloutSpec, step: Step, entered_now: bool) -> bool:
    label = _step_label(spec, tick.status.step_index)
    names = _step_metric_names(spec, step)
    _hold_weight(tick, spec)
    checks = {c.metric: c for c in tick.obs.checks or ()}
    # Results of a tick that started on an earlier step judged earlier traffic: they do not count here.
    if not entered_now and names and all(n in checks for n in names):
        if all(checks[n].verdict is Verdict.PASS for n in names):
            passed = _describe(tuple(checks[n] for n in names), Verdict.PASS)
            tick.emit("Normal", "AnalysisStepPassed", f"Step {label}: all {len(names)} metric(s) passed ({passed}).")
            return True
        tick.update(message=f"Step {label}: analysis did not pass; running it again in "
                            f"{spec.analysis.interval_s:g}s")
        tick.wake_within(spec.analysis.interval_s)
        return False
    tick.wake_within((_analysis_step_due_at(spec, tick.status, tick.now) - tick.now).total_seconds())
    tick.update(message=f"Step {label}: waiting for analysis of {', '.join(names)}")
    return False


def _steps_finished(tick: _Tick, spec: RolloutSpec) -> None:
    if _gate_blocked(tick.status.analysis):
        _hold_weight(tick, spec)
        tick.update(message=f"All steps done; promotion of {spec.candidate.version} waits for a passing "
                            f"analysis ({_gate_summary(tick.status)})")
        tick.condition(ConditionType.PROGRESSING, "True", "AwaitingAnalysis", tick.status.message)
        return
    _begin_promotion(tick, spec)
    _promote(tick, spec)


def _paused(tick: _Tick, spec: RolloutSpec) -> None:
    label = _step_label(spec, tick.status.step_index)
    tick.update(message=f"Paused at step {label} with {spec.candidate.version} at "
                        f"{tick.obs.target.candidate_weight}%; resume to continue")
    tick.condition(ConditionType.PROGRESSING, "False", "Paused", tick.status.message)


def _hold_weight(tick: _Tick, spec: RolloutSpec) -> None:
    """Correct drift: while steps wait, the candidate keeps the weight of the latest setWeight step."""
    weight = _desired_weight(spec, tick.status.step_index)
    if not _weight_in_place(tick.obs, spec, weight):
        tick.traffic = TrafficChange("weight", weight)
        tick.wake_within(APPLY_REQUEUE_S)


def _weight_in_place(obs: Observations, spec: RolloutSpec, weight: int) -> bool:
    target = obs.target
    if target.candidate_present and target.candidate_model_uri not in ("", spec.candidate.model_uri):
        return False  # a predictor left over from an earlier candidate still serves the old model
    if weight == 0:
        return target.candidate_weight == 0
    return target.candidate_present and target.candidate_weight == weight


# --------------------------------------------------------------------------------------------------
# Promotion


def _begin_promotion(tick: _Tick, spec: RolloutSpec) -> None:
    tick.update(phase=Phase.PROMOTING, step_index=len(spec.steps), step_started_at=tick.now)
    tick.condition(ConditionType.PROGRESSING, "True", "Promoting",
                   f"Promoting {spec.candidate.version} to stable predictor {spec.stable_predictor}.")
    tick.emit("Normal", "Promoting",
              f"Promoting {spec.candidate.version}: stable predictor {spec.stable_predictor} takes "
              f"{spec.candidate.model_uri} at 100% and the candidate predictor is removed.")


def _promote(tick: _Tick, spec: RolloutSpec) -> None:
    if _gate_blocked(tick.status.analysis):
        tick.update(message=f"Promotion of {spec.candidate.version} waits for a passing analysis "
                            f"({_gate_summary(tick.status)})")
        return
    target = tick.obs.target
    if target.stable_model_uri == spec.candidate.model_uri and not target.candidate_present:
        _succeed(tick, spec)
        return
    tick.traffic = TrafficChange("promote")
    tick.wake_within(APPLY_REQUEUE_S)
    tick.update(message=f"Promoting {spec.candidate.version} to stable predictor {spec.stable_predictor}")


def _succeed(tick: _Tick, spec: RolloutSpec) -> None:
    message = (f"Promoted {spec.candidate.version}: stable predictor {spec.stable_predictor} serves "
               f"{spec.candidate.model_uri} to all traffic.")
    _finish(tick, Phase.SUCCEEDED, "RolloutSucceeded", message)
    tick.update(stable_version=spec.candidate.version, candidate_weight=0)
    tick.emit("Normal", "Promoted", message)


# --------------------------------------------------------------------------------------------------
# Small helpers


def _current_step(spec: RolloutSpec, status: RolloutStatus) -> Step | None:
    return spec.steps[status.step_index] if 0 <= status.step_index < len(spec.steps) else None


def _steps_done(spec: RolloutSpec, status: RolloutStatus) -> bool:
    return status.phase is Phase.PROMOTING or status.step_index >= len(spec.steps)


def _desired_weight(spec: RolloutSpec, step_index: int) -> int:
    """The weight of the latest setWeight step at or before step_index (0 before the first)."""
    weights = [s.weight for s in spec.steps[: step_index + 1] if s.kind is StepKind.SET_WEIGHT]
    return (weights[-1] or 0) if weights else 0


def _step_metric_names(spec: RolloutSpec, step: Step) -> tuple[str, ...]:
    return step.metrics or tuple(m.name for m in spec.analysis.metrics)


def _step_label(spec: RolloutSpec, index: int) -> str:
    return f"{min(index + 1, len(spec.steps))}/{len(spec.steps)}"


def _step_started_message(spec: RolloutSpec, index: int) -> str:
    step = spec.steps[index]
    label = _step_label(spec, index)
    if step.kind is StepKind.SET_WEIGHT:
        weight = step.weight or 0
        return (f"Step {label}: shifting {weight}% of traffic to candidate {spec.candidate.version} "
                f"(stable {spec.stable_predictor} keeps {100 - weight}%).")
    if step.kind is StepKind.PAUSE:
        if step.duration_s is None:
            return f"Step {label}: pausing until resumed by hand; analysis keeps watching the candidate."
        return f"Step {label}: pausing for {step.duration_s:g}s while analysis keeps running."
    return f"Step {label}: analysing {', '.join(_step_metric_names(spec, step))}; all must pass to go on."
