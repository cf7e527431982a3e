"""The strategy seam: the spec names a strategy and the engine hands the Progressing and Paused phases to
that strategy's module, while revisions, the gate, actions and promotion stay shared."""

from __future__ import annotations

from typing import Any

import pytest
from modelrollout.api import RolloutSpec, SpecError, StrategyKind
from modelrollout.engine import strategy
from modelrollout.engine.canary import Canary
from modelrollout.engine.context import Tick
from modelrollout.status import Phase
from modelrollout.traffic import TrafficChange

from .conftest import LIMITS, Run, make_spec, spec_dict


def test_the_spec_names_its_strategy_and_canary_is_registered() -> None:
    assert make_spec().strategy is StrategyKind.CANARY
    assert isinstance(strategy.STRATEGIES[StrategyKind.CANARY], Canary)
    assert set(strategy.STRATEGIES) == set(StrategyKind)  # every strategy the spec accepts has a module


@pytest.mark.parametrize("raw, says", [
    ({"blueGreen": {"steps": [{"setWeight": 10}]}},
     "spec.strategy: unknown strategy 'blueGreen'; supported: canary, abTest, shadow"),
    ({}, "spec.strategy: names exactly one strategy (canary, abTest, shadow)"),
    ({"canary": {"steps": [{"setWeight": 10}]}, "abTest": {"duration": "1m", "primary": "x"}},
     "spec.strategy: names exactly one strategy (canary, abTest, shadow)"),
    ({"canary": {"steps": []}}, "spec.strategy.canary.steps: needs at least one step"),
])
def test_a_strategy_that_is_not_exactly_one_known_one_is_refused(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecError) as refused:
        RolloutSpec.parse({**spec_dict(), "strategy": raw}, LIMITS)
    assert str(refused.value) == says


class Recording:
    """A strategy that asks for a mirror and records that the engine called it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def progress(self, tick: Tick, spec: RolloutSpec) -> None:
        self.calls.append("progress")
        tick.ask(TrafficChange("weight", mirror_percent=100))

    def paused(self, tick: Tick, spec: RolloutSpec) -> None:
        self.calls.append("paused")


def test_the_engine_hands_the_progressing_phase_to_the_spec_s_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    recording = Recording()
    monkeypatch.setattr(strategy, "STRATEGIES", {StrategyKind.CANARY: recording})
    run = Run(make_spec())
    run.tick()  # a revision starts
    plan = run.tick(after=1)
    assert run.status.phase is Phase.PROGRESSING
    assert recording.calls and recording.calls[-1] == "progress"
    assert plan.traffic == TrafficChange("weight", mirror_percent=100)
    run.tick(after=1, action="pause")
    run.tick(after=1)
    assert run.status.phase is Phase.PAUSED and recording.calls[-1] == "paused"
