"""Canary: the candidate's share rises step by step (setWeight, pause, analysis), each rise earned by
every metric passing at the weight before it; the steps machinery is ``steps``."""

from __future__ import annotations

from ..api import RolloutSpec
from . import steps
from .context import Tick


class Canary:
    def progress(self, tick: Tick, spec: RolloutSpec) -> None:
        steps.run_steps(tick, spec)

    def paused(self, tick: Tick, spec: RolloutSpec) -> None:
        steps.hold_step_traffic(tick, spec)
        steps.paused(tick, spec)
