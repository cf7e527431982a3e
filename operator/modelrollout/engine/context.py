"""The reconcile context every part of the engine works on, and the Plan it becomes.

One ``Tick`` lives for one ``decide`` call: the inputs (spec, observations, clock, the persisted status)
and what the parts decide (the status to write, a traffic change, Events, when to look again).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..api import Phase, RolloutSpec, Step, StepKind
from ..status import CheckRecord, Condition, ConditionType, Reason, RolloutStatus, set_condition, utc
from ..traffic import TargetObservation, TrafficChange

ACTIONS = ("pause", "resume", "promote", "abort", "retry")
ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})

# How long an active rollout may go without a tick. Changes of the rollout and of its deployment wake it
# through the watch, and its deadlines (analysis due, pause end, progress deadline) through wake_within:
# this is the resync of last resort, not a cadence.
ACTIVE_REQUEUE_CAP_S = 30.0
APPLY_REQUEUE_S = 1.0  # after asking for a traffic change: look again soon to confirm it
MIN_REQUEUE_S = 1.0


@dataclass(frozen=True)
class Observations:
    target: TargetObservation
    checks: tuple[CheckRecord, ...] | None = None  # metrics the handler ran this tick; None: none ran
    action: str | None = None  # manual action requested through the action annotation
    deleting: bool = False  # the ModelRollout is being deleted: its candidate must go first
    refused: str = ""  # the target refused this rollout's last write for good (a webhook), in its words


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: Reason
    message: str


@dataclass(frozen=True)
class Plan:
    """What one tick decided. The handler writes ``status`` first, then ``traffic``, then ``events``:
    a decision is on record before anything acts on it, so a crash between the writes is completed by
    the next tick instead of undone."""

    status: RolloutStatus
    traffic: TrafficChange | None = None
    events: tuple[Event, ...] = ()
    # Seconds until the next tick; None: none until the rollout or its deployment changes (finished).
    requeue_after: float | None = ACTIVE_REQUEUE_CAP_S
    clear_action: bool = False  # the action annotation was acted on or rejected: remove it
    # The rollout has traffic at stake: deleting it must wait until its candidate is gone.
    needs_finalizer: bool = False


@dataclass
class Tick:
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

    @property
    def initial_healthy(self) -> str:
        condition = self.initial.condition(ConditionType.HEALTHY)
        return condition.status if condition is not None else ""

    @property
    def target(self) -> TargetObservation:
        return self.obs.target

    def emit(self, type_: Literal["Normal", "Warning"], reason: Reason, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def condition(self, type_: ConditionType, status: str, reason: Reason, message: str) -> None:
        new = Condition(type=str(type_), status=status, reason=reason, message=message,
                        observed_generation=self.generation)
        self.status = replace(self.status, conditions=set_condition(self.status.conditions, new, self.now))

    def update(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)

    def ask(self, change: TrafficChange) -> None:
        self.traffic = change
        self.wake_within(APPLY_REQUEUE_S)

    def wake_within(self, seconds: float) -> None:
        self.requeue_after = min(self.requeue_after, max(MIN_REQUEUE_S, seconds))

    def plan(self) -> Plan:
        phase = self.status.phase
        at_stake = (phase in ACTIVE_PHASES and self.status.revision > 0) or self.traffic is not None
        # A finished rollout with no traffic write left waits for the watch: an edit, an action, a
        # deletion, or its deployment changing (its candidate coming back) wakes it; time alone does not.
        finished = phase is not None and phase.terminal and self.traffic is None
        return Plan(status=self.status, traffic=self.traffic, events=tuple(self.events),
                    requeue_after=None if finished else self.requeue_after, clear_action=self.clear_action,
                    needs_finalizer=at_stake)


def whole_seconds(now: dt.datetime) -> dt.datetime:
    return utc(now).replace(microsecond=0)


def current_step(spec: RolloutSpec, status: RolloutStatus) -> Step | None:
    return spec.steps[status.step_index] if 0 <= status.step_index < len(spec.steps) else None


def desired_weight(spec: RolloutSpec, step_index: int) -> int:
    """The weight of the latest setWeight step at or before step_index (0 before the first)."""
    weights = [s.weight for s in spec.steps[: step_index + 1] if s.kind is StepKind.SET_WEIGHT]
    return (weights[-1] or 0) if weights else 0


def desired_mirror(spec: RolloutSpec, step_index: int) -> int:
    """The mirrored share at step_index: a mirror step's, and after it until the first setWeight (the
    shadow stays a shadow through the pauses and analyses before it goes live); 0 otherwise."""
    for step in reversed(spec.steps[: step_index + 1]):
        if step.kind is StepKind.SET_WEIGHT:
            return 0
        if step.kind is StepKind.MIRROR:
            return step.mirror
    return 0


def step_metric_names(spec: RolloutSpec, step: Step) -> tuple[str, ...]:
    return step.metrics or tuple(m.name for m in spec.analysis.metrics)


def step_label(spec: RolloutSpec, index: int) -> str:
    return f"{min(index + 1, len(spec.steps))}/{len(spec.steps)}"


def seconds_between(start: dt.datetime, end: dt.datetime) -> float:
    return (end - start).total_seconds()


def step_started_message(spec: RolloutSpec, index: int) -> str:
    step = spec.steps[index]
    label = step_label(spec, index)
    if step.kind is StepKind.SET_WEIGHT:
        weight = step.weight or 0
        return (f"Step {label}: shifting {weight}% of traffic to candidate {spec.candidate.version} "
                f"(stable {spec.stable_predictor} keeps {100 - weight}%).")
    if step.kind is StepKind.MIRROR:
        return (f"Step {label}: {spec.candidate.version} becomes a shadow: {step.mirror}% of live requests are "
                f"copied to it and its answers reach nobody, for at least {step.duration_s:g}s and until every "
                "metric passed there.")
    if step.kind is StepKind.PAUSE:
        if step.duration_s is None:
            return f"Step {label}: pausing until resumed by hand; analysis keeps watching the candidate."
        return (f"Step {label}: pausing for {step.duration_s:g}s once the candidate serves its weight; "
                "analysis keeps running.")
    return (f"Step {label}: analysing {', '.join(step_metric_names(spec, step))} over a full window at this "
            "weight; all must pass to go on.")
