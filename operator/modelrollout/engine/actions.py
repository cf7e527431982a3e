"""Manual actions (the ``modelrollout.dev/action`` annotation): pause, resume, promote, abort, retry.

None of them can raise the candidate's weight past the gate: ``resume`` only lets the steps go on (and
a setWeight still waits for a pass), ``promote`` skips the remaining steps but the promotion still
needs every metric to pass at the current weight, and is refused outright while one is failing.
"""

from __future__ import annotations

from collections.abc import Callable

from ..api import Phase, RolloutSpec, StepKind
from ..status import ConditionType, Reason
from . import gate, promotion, steps
from .context import ACTIONS, Tick, current_step, step_label
from .revisions import roll_back, start_revision


def terminal_action(tick: Tick, spec: RolloutSpec, action: str) -> bool:
    """Handle an action in a terminal phase; False when this tick must stop here."""
    if action == "retry" and tick.status.phase is not Phase.SUCCEEDED:
        tick.clear_action = True
        started = start_revision(tick, spec, "retry requested")
        tick.update(last_handled_action=action)
        return started
    reject(tick, action, f"the rollout already ended ({tick.status.phase})")
    return True


def reject(tick: Tick, action: str, why: str) -> None:
    tick.clear_action = True
    if action == tick.status.last_handled_action and action in ACTIONS and not tick.fresh_revision:
        return  # the same request seen again before its annotation was removed: nothing new to say
    if action not in ACTIONS:
        tick.emit("Warning", Reason.INVALID_ACTION,
                  f"Ignored unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    else:
        tick.emit("Warning", Reason.ACTION_REJECTED, f"Ignored action {action!r}: {why}.")


def active_action(tick: Tick, spec: RolloutSpec, action: str) -> None:
    """Act on a manual action while the rollout runs, or reject it with a Warning; either way clear it."""
    handler = _HANDLERS.get(action)
    refusal = handler(tick, spec) if handler else f"the rollout is {tick.status.phase}"
    if refusal:
        reject(tick, action, refusal)
        return
    tick.update(last_handled_action=action)
    tick.clear_action = True


def _pause(tick: Tick, spec: RolloutSpec) -> str:
    if tick.status.phase is not Phase.PROGRESSING:
        return f"the rollout is {tick.status.phase}"
    tick.update(phase=Phase.PAUSED)
    tick.emit("Normal", Reason.PAUSED, f"Paused the rollout of {spec.candidate.version} at step "
              f"{step_label(spec, tick.status.step_index)} on request; traffic stays as it is.")
    return ""


def _resume(tick: Tick, spec: RolloutSpec) -> str:
    if tick.status.phase is not Phase.PAUSED:
        return f"the rollout is {tick.status.phase}, not Paused"
    tick.update(phase=Phase.PROGRESSING)
    tick.emit("Normal", Reason.RESUMED, f"Resumed the rollout of {spec.candidate.version} on request; a higher "
              "weight still waits for every metric to pass.")
    tick.condition(ConditionType.PROGRESSING, "True", Reason.RESUMED, "Resumed on request.")
    step = current_step(spec, tick.status)
    if step is not None and step.kind is StepKind.PAUSE and step.duration_s is None:
        steps.advance(tick, spec)  # resuming is what ends a pause step without a duration
    return ""


def _promote(tick: Tick, spec: RolloutSpec) -> str:
    if tick.status.phase is Phase.PROMOTING:
        return "the candidate is already being promoted"
    blocking = gate.blocking_verdicts(tick.status)
    if blocking:
        return f"the latest analysis did not pass ({blocking})"
    skipped = len(spec.steps) - tick.status.step_index
    tick.emit("Normal", Reason.PROMOTION_REQUESTED,
              f"Promoting {spec.candidate.version} on request, skipping {skipped} remaining step(s); the "
              f"promotion still waits for every metric to pass at {tick.status.candidate_weight}%.")
    promotion.begin(tick, spec, requested=True)
    return ""


def _abort(tick: Tick, spec: RolloutSpec) -> str:
    if tick.status.promotion_started_at is not None:
        return "the promotion is already under way and cannot be undone"
    roll_back(tick, Phase.ABORTED, Reason.ABORTED, f"Aborted the rollout of {spec.candidate.version} on request; "
              f"stable predictor {spec.stable_predictor} takes all traffic.")
    return ""


def _retry(tick: Tick, spec: RolloutSpec) -> str:
    return f"the rollout is still {tick.status.phase}; retry applies after RolledBack, Aborted or Failed"


_HANDLERS: dict[str, Callable[[Tick, RolloutSpec], str]] = {
    "pause": _pause,
    "resume": _resume,
    "promote": _promote,
    "abort": _abort,
    "retry": _retry,
}
