"""The rollout engine: a pure state machine from (spec, status, observations, clock) to a Plan.

Split by concern, all working on one reconcile context (``context.Tick``):
- ``decide``: the entry point and the active-phase pipeline;
- ``revisions``: starting and ending revisions, keeping an ended one ended, spec edits;
- ``gate``: the per-metric ledger, when checks are due, and what earns more traffic;
- ``steps``: setWeight, pause and analysis steps on the serving clock;
- ``promotion``: the ordered promotion;
- ``actions``: manual actions.
"""

from ..traffic import TargetObservation, TrafficChange
from .context import ACTIONS, ACTIVE_PHASES, Event, Observations, Plan
from .decide import decide
from .gate import PlannedCheck, gate_open, metrics_due, next_check_at, planned_checks
from .revisions import recorded_names

__all__ = [
    "ACTIONS",
    "ACTIVE_PHASES",
    "Event",
    "Observations",
    "Plan",
    "PlannedCheck",
    "TargetObservation",
    "TrafficChange",
    "decide",
    "gate_open",
    "metrics_due",
    "next_check_at",
    "planned_checks",
    "recorded_names",
]
