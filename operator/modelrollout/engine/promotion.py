"""Promotion, in the order that never leaves users on a model nobody measured or on a rolling stable:

1. the gate: every metric's latest check a Pass over a full window at the final weight;
2. ``promotion_started_at`` goes into status (the decision on record), then the stable predictor takes
   the candidate's model while the candidate still carries its share (``adopt``);
3. once the target serves the new model on the stable predictor, traffic moves and the candidate goes
   (``promote``);
4. ``Succeeded`` once the target serves the new model at the whole share with no candidate left.
If the stable predictor cannot serve the new model within the progress deadline (or the target reports
Failed), it goes back to its old model and the rollout ends Failed/PromotionFailed.
"""

from __future__ import annotations

import datetime as dt

from ..api import Phase, RolloutSpec
from ..status import ConditionType, Reason
from ..traffic import TrafficChange
from . import gate
from .context import Tick, seconds_between
from .revisions import finish, roll_back

# A target's readiness may be written some time after a spec change and without an observedGeneration
# (Seldon v1 does both), so "serving" read right after the stable predictor took the new model can
# describe the old pods.
# The traffic moves only on a serving observation at least this long after that write.
SETTLE_S = 3.0


def begin(tick: Tick, spec: RolloutSpec, *, requested: bool) -> None:
    tick.update(phase=Phase.PROMOTING, step_index=len(spec.steps), step_started_at=tick.now)
    how = "on request, " if requested else ""
    tick.condition(ConditionType.PROGRESSING, "True", Reason.PROMOTING,
                   f"Promoting {spec.candidate.version} {how}once every metric passed at "
                   f"{tick.status.candidate_weight}%.")


def promote(tick: Tick, spec: RolloutSpec) -> None:
    target = tick.target
    status = tick.status
    uri = spec.candidate.model_uri
    if status.promotion_started_at is None:
        if spec.analysis.metrics and not gate.gate_open(spec, status):
            why = gate.describe_unearned(spec, status, tick.now)
            message = f"Promotion of {spec.candidate.version} waits for every metric to pass at " \
                      f"{status.candidate_weight}%: {why}"
            tick.update(message=message)
            tick.condition(ConditionType.PROGRESSING, "True", Reason.AWAITING_ANALYSIS, message)
            due = gate.next_due(spec, status)
            if due is not None:
                tick.wake_within(seconds_between(tick.now, due))
            return
        tick.update(promotion_started_at=tick.now)
        tick.emit("Normal", Reason.PROMOTING,
                  f"Promoting {spec.candidate.version}: stable predictor {spec.stable_predictor} takes {uri} "
                  f"while the candidate keeps its {status.candidate_weight}%; traffic moves once it serves.")
    started = tick.status.promotion_started_at or tick.now
    waited = seconds_between(started, tick.now)
    if target.failed or waited > spec.progress_deadline_s:
        _promotion_failed(tick, spec, waited)
        return
    if target.stable_model_uri != uri:
        tick.ask(TrafficChange("adopt"))
        tick.update(message=f"Promoting {spec.candidate.version}: stable predictor {spec.stable_predictor} "
                            f"is taking {uri}")
        return
    if not target.serving or waited < SETTLE_S:
        deadline = started + dt.timedelta(seconds=spec.progress_deadline_s)
        tick.update(message=f"Promoting {spec.candidate.version}: waiting for stable predictor "
                            f"{spec.stable_predictor} to serve it ({target.readiness_detail or 'settling'}; "
                            f"progressDeadline {spec.progress_deadline_s:g}s, until "
                            f"{deadline.strftime('%H:%M:%SZ')})")
        # Settling is a clock; serving comes with a change of the deployment (its watch wakes the rollout).
        tick.wake_within(SETTLE_S - waited if waited < SETTLE_S else seconds_between(tick.now, deadline) + 1.0)
        return
    if target.candidate_present and target.candidate_ours:
        tick.ask(TrafficChange("promote"))
        tick.update(message=f"Promoting {spec.candidate.version}: moving the candidate's traffic to stable "
                            f"predictor {spec.stable_predictor}")
        return
    _succeed(tick, spec)


def _succeed(tick: Tick, spec: RolloutSpec) -> None:
    message = (f"Promoted {spec.candidate.version}: stable predictor {spec.stable_predictor} serves "
               f"{spec.candidate.model_uri} to all its traffic.")
    finish(tick, Phase.SUCCEEDED, Reason.ROLLOUT_SUCCEEDED, message)
    tick.update(stable_version=spec.candidate.version, candidate_weight=0, candidate_mirror=0)
    tick.emit("Normal", Reason.PROMOTED, message)


def _promotion_failed(tick: Tick, spec: RolloutSpec, waited: float) -> None:
    target = tick.target
    detail = target.readiness_detail or "not serving"
    restore = tick.status.stable_model_uri
    roll_back(tick, Phase.FAILED, Reason.PROMOTION_FAILED,
              f"Promotion of {spec.candidate.version} failed: stable predictor {spec.stable_predictor} did not "
              f"serve it within {waited:.0f}s ({detail}; progressDeadline {spec.progress_deadline_s:g}s); it goes "
              f"back to {restore or 'its previous model'} and the candidate is removed.",
              restore_model_uri=restore, restore_version=tick.status.stable_version)
