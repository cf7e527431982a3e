"""Revisions: starting one, ending one (finish, roll back), keeping an ended one ended, spec edits.

A revision records what it acts on when it starts (target, predictor names, the stable's model, a hash
of the steps); every later write uses those records, so an edit of the spec mid-rollout can neither
redirect a write to another predictor nor silently reinterpret ``stepIndex``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

from ..api import Phase, RolloutSpec, SpecError
from ..status import AnalysisStatus, ConditionType, HistoryEntry, Reason, RolloutStatus
from ..traffic import TrafficChange
from .context import ACTIVE_PHASES, Tick, step_label, step_started_message


def steps_hash(spec: RolloutSpec) -> str:
    """What the steps do; for an A/B test also its settings, so that an edit starts the test again."""
    # A mirror step adds its share only when there is one, so canary hashes stay what they were.
    steps: list[Any] = [[s.kind, s.weight, s.duration_s, list(s.metrics), *([s.mirror] if s.mirror else [])]
                        for s in spec.steps]
    if spec.ab_test is not None:
        test = spec.ab_test
        steps.append(["abTest", test.duration_s, test.primary, test.stop_early])
    return hashlib.sha256(json.dumps(steps).encode()).hexdigest()[:16]


def restart_cause(spec: RolloutSpec, status: RolloutStatus) -> str:
    """Why this tick starts a new revision ("" when it does not)."""
    if status.phase is None or status.phase is Phase.IDLE:
        return "new rollout"
    spec_valid = status.condition(ConditionType.SPEC_VALID)
    if status.phase is Phase.FAILED and spec_valid is not None and spec_valid.reason == Reason.INVALID_SPEC:
        return "spec fixed"
    if (spec.candidate.version, spec.candidate.model_uri) != (status.candidate_version,
                                                               status.candidate_model_uri):
        return "new candidate"
    return ""


def start_revision(tick: Tick, spec: RolloutSpec, cause: str) -> bool:
    """Start a new revision; False when this tick must stop here (failed at once, or clearing traffic)."""
    old = tick.status
    superseded = old.phase is not None and not old.phase.terminal and old.revision > 0
    if superseded:
        tick.status = old.with_history(HistoryEntry(
            revision=old.revision, version=old.candidate_version, model_uri=old.candidate_model_uri,
            result="Superseded", reason=f"candidate changed to {spec.candidate.version}",
            started_at=old.started_at, finished_at=tick.now))
    target = tick.target
    revision = old.revision + 1
    tick.fresh_revision = True
    tick.update(
        phase=Phase.PROGRESSING, revision=revision, candidate_version=spec.candidate.version,
        candidate_model_uri=spec.candidate.model_uri,
        stable_version=target.stable_version or old.stable_version, step_index=0,
        step_started_at=tick.now, started_at=tick.now, finished_at=None, analysis=AnalysisStatus(),
        waiting_since=None, serving_since=None, weight_since=None, promotion_started_at=None,
        last_handled_action="", target_kind=spec.target.kind, target_name=spec.target.name,
        stable_predictor=spec.stable_predictor, candidate_predictor=spec.candidate.predictor_name,
        stable_model_uri=target.stable_model_uri if target.ready else "", steps_hash=steps_hash(spec),
        message=f"Revision {revision}: rolling out {spec.candidate.version}")
    tick.condition(ConditionType.SPEC_VALID, "True", Reason.SPEC_ACCEPTED, "The spec is valid.")
    tick.condition(ConditionType.COMPLETED, "False", Reason.IN_PROGRESS, f"Revision {revision} is in progress.")
    tick.condition(ConditionType.HEALTHY, "Unknown", Reason.NOT_YET_ANALYSED,
                   f"No analysis has run for revision {revision} yet.")
    tick.condition(ConditionType.PROGRESSING, "True", Reason.ROLLOUT_STARTED,
                   f"Revision {revision} started ({cause}).")
    replacing = f", replacing stable {tick.status.stable_version}" if tick.status.stable_version else ""
    tick.emit("Normal", Reason.ROLLOUT_STARTED,
              f"Started revision {revision} ({cause}): rolling out {spec.candidate.version} "
              f"({spec.candidate.model_uri}) as predictor {spec.candidate.predictor_name} "
              f"in {len(spec.steps)} steps{replacing}.")
    if target.ready and target.stable_model_uri == spec.candidate.model_uri:
        fail_candidate_is_stable(tick, spec)
        return False
    if superseded and target.ready and target.candidate_ours:
        tick.ask(TrafficChange("rollback"))
        tick.emit("Normal", Reason.CANDIDATE_RESET,
                  f"Removing the candidate predictor of superseded revision {old.revision} "
                  f"({old.candidate_version}) before revision {revision} starts.")
        tick.update(message=f"Revision {revision}: clearing the previous candidate before step 1")
        return False
    tick.emit("Normal", Reason.STEP_STARTED, step_started_message(spec, 0))
    return True


def finish(tick: Tick, phase: Phase, reason: Reason, message: str) -> None:
    """Move to a terminal phase and record the revision in the history."""
    status = tick.status
    tick.status = status.with_history(HistoryEntry(
        revision=status.revision, version=status.candidate_version, model_uri=status.candidate_model_uri,
        result=str(phase), reason=reason, started_at=status.started_at, finished_at=tick.now))
    tick.update(phase=phase, finished_at=tick.now, message=message, weight_since=None)
    tick.condition(ConditionType.PROGRESSING, "False", reason, message)
    tick.condition(ConditionType.COMPLETED, "True", Reason(str(phase)), message)


def roll_back(tick: Tick, phase: Phase, reason: Reason, message: str, restore_model_uri: str = "",
              restore_version: str = "") -> None:
    """End the revision and take the candidate's traffic away. The ended phase is written before the
    traffic change, so a crash in between is completed by the next tick (end_state), never undone."""
    finish(tick, phase, reason, message)
    if tick.target.ready and (tick.target.candidate_ours or restore_model_uri):
        tick.ask(TrafficChange("rollback", restore_model_uri=restore_model_uri,
                               restore_version=restore_version if restore_model_uri else ""))
        # What this write makes true; if it is lost, the next tick reads the weight back and asks again.
        tick.update(candidate_weight=0, candidate_mirror=0)
    tick.emit("Warning", Reason(str(phase)), message)


def fail_candidate_is_stable(tick: Tick, spec: RolloutSpec) -> None:
    message = (f"Nothing to roll out: stable predictor {spec.stable_predictor} already serves "
               f"{spec.candidate.model_uri}; set spec.candidate to a different model.")
    finish(tick, Phase.FAILED, Reason.CANDIDATE_IS_STABLE, message)
    tick.condition(ConditionType.SPEC_VALID, "False", Reason.CANDIDATE_IS_STABLE, message)
    tick.emit("Warning", Reason.CANDIDATE_IS_STABLE, message)
    if tick.target.ready and tick.target.candidate_ours:
        tick.ask(TrafficChange("rollback"))


def invalid_spec(tick: Tick, error: SpecError) -> None:
    """An unusable spec rolls a running revision back (with the names it recorded when it started); a
    finished one keeps its result and only reports the spec."""
    status = tick.status
    running = status.phase in ACTIVE_PHASES and status.revision > 0
    message = f"The spec is invalid and nothing will change until it is fixed: {error}"
    if running:
        message = (f"The spec is invalid, so candidate {status.candidate_version} was rolled back "
                   f"(stable predictor {status.stable_predictor} takes its traffic): {error}")
    old = status.condition(ConditionType.SPEC_VALID)
    if old is None or old.reason != Reason.INVALID_SPEC or old.message != message:
        tick.emit("Warning", Reason.INVALID_SPEC, message)
    if running:
        finish(tick, Phase.FAILED, Reason.INVALID_SPEC, message)
        if tick.target.ready and tick.target.candidate_ours:
            tick.ask(TrafficChange("rollback"))
        tick.update(candidate_weight=0 if tick.target.ready else status.candidate_weight,
                    candidate_mirror=0 if tick.target.ready else status.candidate_mirror)
    elif status.phase in (None, Phase.IDLE):
        tick.update(phase=Phase.FAILED, message=message)
        tick.condition(ConditionType.PROGRESSING, "False", Reason.INVALID_SPEC, message)
        tick.condition(ConditionType.COMPLETED, "True", Reason.FAILED, message)
    elif status.phase is not None and status.phase.terminal:
        end_state(tick, None)
    tick.condition(ConditionType.SPEC_VALID, "False", Reason.INVALID_SPEC, message)


def mark_spec_valid(tick: Tick, spec: RolloutSpec) -> None:
    """A finished rollout whose spec was invalid for a while reports it valid again (result unchanged)."""
    old = tick.status.condition(ConditionType.SPEC_VALID)
    if old is not None and old.reason == Reason.INVALID_SPEC:
        tick.condition(ConditionType.SPEC_VALID, "True", Reason.SPEC_ACCEPTED, "The spec is valid.")
        tick.emit("Normal", Reason.SPEC_VALID, f"The spec is valid again; the rollout of "
                  f"{spec.candidate.version} stays {tick.status.phase}.")


def end_state(tick: Tick, spec: RolloutSpec | None) -> None:
    """Keep a finished rollout finished: complete an interrupted rollback, and remove our candidate again
    if it reappears. A promotion that failed also gives the stable predictor its old model back, as long
    as it still serves the failed candidate's model (someone's later change is left alone)."""
    target = tick.target
    status = tick.status
    tick.update(weight_since=None)
    if not target.ready or status.phase is Phase.SUCCEEDED:
        return
    tick.update(candidate_weight=target.candidate_weight if target.candidate_ours else 0,
                candidate_mirror=target.candidate_mirror if target.candidate_ours else 0)
    restore = ""
    progressing = status.condition(ConditionType.PROGRESSING)
    promotion_failed = progressing is not None and progressing.reason == Reason.PROMOTION_FAILED
    if promotion_failed and status.stable_model_uri and target.stable_model_uri == status.candidate_model_uri:
        restore = status.stable_model_uri
    if target.candidate_ours or restore:
        tick.ask(TrafficChange("rollback", restore_model_uri=restore,
                               restore_version=status.stable_version if restore else ""))


def check_steps_edit(tick: Tick, spec: RolloutSpec) -> None:
    """Steps edited mid-rollout start again from the first step at the current weight: a setWeight
    above it must be earned like any other, one below it lowers the weight. Never reinterpret stepIndex."""
    status = tick.status
    new_hash = steps_hash(spec)
    if not status.steps_hash:
        tick.update(steps_hash=new_hash)  # a revision from before the hash was kept
        return
    if new_hash == status.steps_hash or status.phase is Phase.PROMOTING:
        return
    tick.update(steps_hash=new_hash, step_index=0, step_started_at=tick.now)
    if status.phase is Phase.PAUSED:
        tick.update(phase=Phase.PROGRESSING)
    message = (f"The steps changed during revision {status.revision}: starting again from step "
               f"{step_label(spec, 0)} with {spec.candidate.version} at {status.candidate_weight}%; "
               "a higher weight must be earned by analysis as before.")
    tick.emit("Normal", Reason.STEPS_CHANGED, message)
    tick.condition(ConditionType.PROGRESSING, "True", Reason.STEPS_CHANGED, message)


def names_edit(spec: RolloutSpec, status: RolloutStatus) -> str:
    """A running revision whose target or predictor names were edited: the edit is refused (the
    revision keeps the names it started with) and this says so ("" when nothing changed)."""
    if not status.target_name:
        return ""
    now = (spec.target.name, spec.stable_predictor, spec.candidate.predictor_name)
    recorded = (status.target_name, status.stable_predictor, status.candidate_predictor)
    if now == recorded:
        return ""
    return (f"spec.targetRef.name, spec.stablePredictor and spec.candidate.predictorName cannot change while "
            f"revision {status.revision} runs (it keeps {'/'.join(recorded)}); abort it or wait for it to end")


def recorded_names(spec: RolloutSpec, status: RolloutStatus) -> RolloutSpec:
    """The spec with the names this revision recorded (what every write of the revision acts on)."""
    if not status.target_name:
        return spec
    return replace(spec, target=replace(spec.target, name=status.target_name),
                   stable_predictor=status.stable_predictor or spec.stable_predictor,
                   candidate=replace(spec.candidate, predictor_name=status.candidate_predictor
                                     or spec.candidate.predictor_name))

