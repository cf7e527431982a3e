"""Steps: setWeight, pause and analysis, and the serving clock they run on.

Clocks count from when the target *serves* the candidate at the step's weight (``weight_since``), not
from when the spec asked for it: a pause that ran out while the deployment was still starting would
otherwise move on with nothing observed. A setWeight that raises the weight needs the gate: every
metric's latest check a Pass over a full window at the current weight.

A mirror step (the shadow strategy's first) makes the candidate a shadow: weight 0 and a mirrored share.
Its clock is the same serving clock (at the mirror), and a shadow goes live (its first setWeight) only
through the gate, with every metric's Pass over a full window as a shadow.
"""

from __future__ import annotations

import datetime as dt

from ..api import Phase, RolloutSpec, Step, StepKind, format_duration
from ..status import ConditionType, Reason
from ..traffic import TrafficChange, share_of
from . import gate, promotion
from .context import (
    Tick,
    current_step,
    desired_mirror,
    desired_weight,
    seconds_between,
    step_label,
    step_metric_names,
    step_started_message,
)


def track_serving(tick: Tick, spec: RolloutSpec) -> None:
    """Update the serving clocks and the observed weight from this tick's observation."""
    target = tick.target
    status = tick.status
    ours = target.ready and target.candidate_ours
    observed = target.candidate_weight if ours else 0
    mirror = target.candidate_mirror if ours else 0
    wanted = desired_weight(spec, status.step_index)
    if observed and observed != wanted and share_of(wanted, target.pool) == share_of(observed, target.pool):
        observed = wanted  # a pool under 100 rounds several weights to one share: believe the one asked for
    serving = (target.ready and target.serving and target.candidate_ours and (observed > 0 or mirror > 0)
               and target.candidate_model_uri in ("", spec.candidate.model_uri))
    if serving:
        same = (status.weight_since is not None and status.candidate_weight == observed
                and status.candidate_mirror == mirror)
        tick.update(serving_since=status.serving_since or tick.now,
                    weight_since=status.weight_since if same else tick.now)
    else:
        tick.update(weight_since=None)
    tick.update(candidate_weight=observed, candidate_mirror=mirror)


def run_steps(tick: Tick, spec: RolloutSpec) -> None:
    """Work through steps until one has to wait; at most one pass over the list per tick."""
    for _ in range(len(spec.steps) + 1):
        step = current_step(spec, tick.status)
        if step is None:
            _steps_finished(tick, spec)
            return
        if step.kind is StepKind.SET_WEIGHT:
            done = _set_weight_step(tick, spec, step)
        elif step.kind is StepKind.MIRROR:
            done = _mirror_step(tick, spec, step)
        elif step.kind is StepKind.PAUSE:
            done = _pause_step(tick, spec, step)
        else:
            done = _analysis_step(tick, spec, step)
        if not done:
            return
        advance(tick, spec)


def _steps_finished(tick: Tick, spec: RolloutSpec) -> None:
    """Promotion needs every metric to pass over a full window at the final weight; until then the
    candidate holds it (and analysis goes on, so a failing one still rolls back at the limit)."""
    final = desired_weight(spec, len(spec.steps) - 1)
    mirror = desired_mirror(spec, len(spec.steps) - 1)
    if spec.analysis.metrics and not _earned(tick, spec, final, mirror):
        why = gate.describe_unearned(spec, tick.status, tick.now)
        hold_step_traffic(tick, spec)
        where = f"as a shadow of {mirror}% of requests" if mirror else f"at {final}%"
        holding(tick, spec, f"All steps done; promotion of {spec.candidate.version} waits for every metric to "
                             f"pass {where}: {why}")
        return
    promotion.begin(tick, spec, requested=False)
    promotion.promote(tick, spec)


def advance(tick: Tick, spec: RolloutSpec) -> None:
    index = tick.status.step_index + 1
    tick.update(step_index=index, step_started_at=tick.now)
    tick.condition(ConditionType.PROGRESSING, "True", Reason.STEP_ADVANCED, f"Step {step_label(spec, index)} started.")
    if index < len(spec.steps):
        tick.emit("Normal", Reason.STEP_STARTED, step_started_message(spec, index))


def _set_weight_step(tick: Tick, spec: RolloutSpec, step: Step) -> bool:
    weight = step.weight or 0
    status = tick.status
    if weight_in_place(tick, spec, weight):
        tick.emit("Normal", Reason.WEIGHT_SET,
                  f"Candidate {spec.candidate.version} now serves {weight}% of traffic "
                  f"(stable {spec.stable_predictor} {100 - weight}%).")
        return True
    before = desired_weight(spec, status.step_index - 1) if status.step_index > 0 else 0
    before_mirror = desired_mirror(spec, status.step_index - 1) if status.step_index > 0 else 0
    if (weight > before and status.candidate_weight == 0 and (status.candidate_mirror == 0 or before_mirror == 0)
            and status.serving_since is not None and spec.analysis.metrics):
        # It served and vanished (or was made a shadow again after it went live): it may come back to the
        # traffic the steps reached, never straight beyond it.
        if before_mirror > 0:  # a shadow serves nobody: it comes back whatever its checks said, to be judged
            tick.ask(TrafficChange("weight", 0, mirror_percent=before_mirror))
        elif before > 0 and not gate.blocking_verdicts(status):
            tick.ask(TrafficChange("weight", before))
        back = f"a shadow of {before_mirror}% of requests" if before_mirror else f"{before}%"
        holding(tick, spec, f"Step {step_label(spec, status.step_index)}: the candidate is back to {back} "
                             f"first; {weight}% waits for every metric to pass there")
        return False
    if weight > status.candidate_weight and not may_raise(tick, spec):
        why = gate.describe_unearned(spec, tick.status, tick.now) or gate.blocking_verdicts(tick.status)
        if 0 < before < status.candidate_weight:  # only ever lower a weight nobody earned; never reset to 0
            tick.ask(TrafficChange("weight", before))
        holding(tick, spec, f"Step {step_label(spec, status.step_index)}: holding {spec.candidate.version} at "
                             f"{tick.status.candidate_weight}% before {weight}%: {why}")
        return False
    tick.ask(TrafficChange("weight", weight))
    tick.update(message=f"Step {step_label(spec, status.step_index)}: shifting {weight}% of "
                        f"traffic to {spec.candidate.version}")
    return False


def _earned(tick: Tick, spec: RolloutSpec, weight: int, mirror: int) -> bool:
    status = tick.status
    return status.candidate_weight == weight and status.candidate_mirror == mirror and gate.gate_open(spec, status)


def may_raise(tick: Tick, spec: RolloutSpec) -> bool:
    """Whether the candidate may get more than it serves now. From a weight above 0: only when every metric
    passed over a full window at that weight. From 0: when it never served in this revision (nothing could
    be measured), or every metric's latest check passed (it vanished and comes back). A shadow (weight 0,
    mirrored) goes live only like any weight: every metric passed over a full window as the shadow."""
    status = tick.status
    if not spec.analysis.metrics:
        return True
    if status.candidate_mirror > 0:
        return gate.gate_open(spec, status)
    if status.candidate_weight == 0:
        return status.serving_since is None or not gate.blocking_verdicts(status)
    return gate.gate_open(spec, status)


def holding(tick: Tick, spec: RolloutSpec, message: str) -> None:
    """The candidate holds its weight until the checks earn it more; say why and wake when one is due."""
    tick.update(message=message)
    tick.condition(ConditionType.PROGRESSING, "True", Reason.AWAITING_ANALYSIS, message)
    _wake_for_checks(tick, spec)


def _pause_step(tick: Tick, spec: RolloutSpec, step: Step) -> bool:
    label = step_label(spec, tick.status.step_index)
    where = _step_traffic_words(spec, tick.status.step_index)
    if step.duration_s is None:
        hold_step_traffic(tick, spec)
        tick.update(phase=Phase.PAUSED)
        paused(tick, spec)
        return False
    started = serving_clock_start(tick, spec)
    if started is None:
        hold_step_traffic(tick, spec)
        tick.update(message=f"Step {label}: the {step.duration_s:g}s pause starts once the candidate serves "
                            f"{where}")
        return False
    ends = started + dt.timedelta(seconds=step.duration_s)
    if tick.now >= ends:
        return True
    hold_step_traffic(tick, spec)
    remaining = seconds_between(tick.now, ends)
    tick.wake_within(remaining)
    # No countdown in the message: status changes only when something a reader needs changes.
    tick.update(message=f"Step {label}: pausing until {ends.strftime('%H:%M:%SZ')} with candidate "
                        f"{spec.candidate.version} at {where}")
    return False


def _mirror_step(tick: Tick, spec: RolloutSpec, step: Step) -> bool:
    """The candidate serves as a shadow for at least the step's duration and until every metric passed
    over a full window there; failures roll it back through the shared gate, as anywhere."""
    label = step_label(spec, tick.status.step_index)
    version = spec.candidate.version
    if not mirror_in_place(tick, spec, step.mirror):
        tick.ask(TrafficChange("weight", 0, mirror_percent=step.mirror))
        tick.update(message=f"Step {label}: adding {version} as a shadow: {step.mirror}% of live requests are "
                            "copied to it and its answers reach nobody")
        return False
    started = serving_clock_start(tick, spec)
    if started is None:
        tick.update(message=f"Step {label}: the shadow's clock starts once {version} answers mirrored requests")
        return False
    ends = started + dt.timedelta(seconds=step.duration_s or 0)
    if tick.now < ends:
        tick.wake_within(seconds_between(tick.now, ends))
        tick.update(message=f"Step {label}: {version} shadows {step.mirror}% of live requests until "
                            f"{ends.strftime('%H:%M:%SZ')}; no user gets its answers")
        return False
    missing = gate.unearned(spec, tick.status)
    if missing:
        why = gate.describe_unearned(spec, tick.status, tick.now)
        holding(tick, spec, f"Step {label}: the shadow of {version} goes on only once every metric passed "
                             f"on its mirrored requests: {why}")
        return False
    passed = "; ".join(r.message for r in tick.status.analysis.last_checks)
    tick.emit("Normal", Reason.SHADOW_PASSED,
              f"The shadow of {version} passed every metric on {step.mirror}% of live requests after "
              f"{format_duration(seconds_between(started, tick.now))} ({passed}); no user got its answers.")
    return True


def serving_clock_start(tick: Tick, spec: RolloutSpec) -> dt.datetime | None:
    """When the current step's clock started: the later of the step's start and the moment the candidate
    served the step's weight; None while it does not serve it yet."""
    status = tick.status
    started = status.step_started_at or tick.now
    weight, mirror = desired_weight(spec, status.step_index), desired_mirror(spec, status.step_index)
    if weight == 0 and mirror == 0:
        return started
    if status.weight_since is None or status.candidate_weight != weight or status.candidate_mirror != mirror:
        return None
    return max(started, status.weight_since)


def _analysis_step(tick: Tick, spec: RolloutSpec, step: Step) -> bool:
    label = step_label(spec, tick.status.step_index)
    names = step_metric_names(spec, step)
    hold_step_traffic(tick, spec)
    missing = gate.unearned(spec, tick.status, names)
    if not missing:
        passed = "; ".join(r.message for r in tick.status.analysis.last_checks if r.metric in names)
        tick.emit("Normal", Reason.ANALYSIS_STEP_PASSED, f"Step {label}: all {len(names)} metric(s) passed ({passed}).")
        return True
    why = gate.describe_unearned(spec, tick.status, tick.now, names)
    tick.update(message=f"Step {label}: analysis of {', '.join(names)} over a full window in this step: {why}")
    _wake_for_checks(tick, spec)
    return False


def paused(tick: Tick, spec: RolloutSpec) -> None:
    label = step_label(spec, tick.status.step_index)
    mirror = tick.status.candidate_mirror
    where = f"as a shadow of {mirror}% of requests" if mirror else f"at {tick.status.candidate_weight}%"
    tick.update(message=f"Paused at step {label} with {spec.candidate.version} {where}; resume to continue")
    tick.condition(ConditionType.PROGRESSING, "False", Reason.PAUSED, tick.status.message)


def hold_step_traffic(tick: Tick, spec: RolloutSpec) -> None:
    """Keep the traffic the steps reached so far: a shadow while the latest traffic step is the mirror,
    else the latest setWeight's weight (``hold``). Re-adding a removed shadow needs no gate: it serves nobody."""
    mirror = desired_mirror(spec, tick.status.step_index)
    if not mirror:
        hold(tick, spec, desired_weight(spec, tick.status.step_index))
    elif not mirror_in_place(tick, spec, mirror):
        tick.ask(TrafficChange("weight", 0, mirror_percent=mirror))


def _step_traffic_words(spec: RolloutSpec, index: int) -> str:
    mirror = desired_mirror(spec, index)
    return f"a shadow of {mirror}% of requests" if mirror else f"{desired_weight(spec, index)}%"


def hold(tick: Tick, spec: RolloutSpec, weight: int) -> None:
    """Correct drift while steps wait: the candidate keeps the weight the steps gave it so far. A weight
    lowered by someone else goes back up only as a step would: when it is earned at the lower weight."""
    if weight_in_place(tick, spec, weight):
        return
    if weight > tick.status.candidate_weight and not may_raise(tick, spec):
        return
    tick.ask(TrafficChange("weight", weight))


def weight_in_place(tick: Tick, spec: RolloutSpec, weight: int) -> bool:
    target = tick.target
    if target.candidate_present and target.candidate_model_uri not in ("", spec.candidate.model_uri):
        return False  # a predictor left over from an earlier candidate still serves the old model
    if weight == 0:
        return tick.status.candidate_weight == 0 and tick.status.candidate_mirror == 0
    return target.candidate_ours and tick.status.candidate_weight == weight


def mirror_in_place(tick: Tick, spec: RolloutSpec, mirror: int) -> bool:
    """Our candidate is a shadow of this share of requests, serving the spec's model."""
    target = tick.target
    if target.candidate_present and target.candidate_model_uri not in ("", spec.candidate.model_uri):
        return False
    status = tick.status
    return target.candidate_ours and status.candidate_weight == 0 and status.candidate_mirror == mirror


def _wake_for_checks(tick: Tick, spec: RolloutSpec) -> None:
    due = gate.next_due(spec, tick.status)
    if due is not None:
        tick.wake_within(seconds_between(tick.now, due))
