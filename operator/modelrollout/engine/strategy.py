"""The strategy seam: what a rollout does while it is Progressing or Paused depends on its strategy.

Everything around it is shared: revisions, the target's readiness, the per-metric ledger and rollback at
the limits (``gate``), manual actions and the ordered promotion. A strategy decides only how the
candidate's traffic moves (a ``TrafficChange``: a weight, a fixed split held, or a mirror) and when it
has earned promotion. A new strategy is a module with a class that has these two methods, registered in
``STRATEGIES`` under its ``api.StrategyKind``, as Argo Rollouts' reconcile picks canary or blue-green.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..api import RolloutSpec, StrategyKind
from .abtest import ABTestStrategy
from .canary import Canary
from .context import Tick
from .shadow import ShadowStrategy


class Strategy(Protocol):
    def progress(self, tick: Tick, spec: RolloutSpec) -> None:
        """Phase Progressing: move the candidate's traffic on, hold it, or begin the promotion."""
        ...

    def paused(self, tick: Tick, spec: RolloutSpec) -> None:
        """Phase Paused: keep the traffic where the strategy had it and say so."""
        ...


STRATEGIES: Mapping[StrategyKind, Strategy] = {
    StrategyKind.CANARY: Canary(),
    StrategyKind.AB_TEST: ABTestStrategy(),
    StrategyKind.SHADOW: ShadowStrategy(),
}


def strategy_of(spec: RolloutSpec) -> Strategy:
    return STRATEGIES[spec.strategy]
