"""The A/B test strategy (engine/abtest.py) and its spec.

Invariants pinned here:
- the split holds for the whole declared duration of serving time, whatever the checks say in between
  (unless a guardrail or a decisive failure rolls back, or stopEarly sees a decisive winner);
- the candidate is promoted only when the primary's check over the whole test says it is better beyond the
  tolerance and every metric passed at the split; a tie or a worse candidate keeps the stable model;
- promote and abort still work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
from modelrollout.api import RolloutSpec, SpecError, StrategyKind
from modelrollout.engine import TrafficChange, planned_checks
from modelrollout.status import Phase, Verdict

from tests.unit.conftest import LIMITS, SUCCESS, T0, Run, check, reasons, spec_dict

ACCURACY = {"name": "accuracy", "template": "model-accuracy", "compare": {"tolerance": 0.01}}


def ab_spec(warmup: str | None = None, **test: Any) -> dict[str, Any]:
    extra = {"warmup": warmup} if warmup else {}
    raw = spec_dict(metrics=[ACCURACY, {**SUCCESS, "window": "30s"}], interval="10s", **extra)
    raw["strategy"] = {"abTest": {"weight": 50, "duration": "120s", "primary": "accuracy", **test}}
    return raw


def ab_run(warmup: str | None = None, **test: Any) -> Run:
    run = Run(RolloutSpec.parse(ab_spec(warmup, **test), LIMITS))
    run.tick()
    run.tick(after=1)  # the split serves from T0+1
    assert run.world.candidate_weight == 50
    return run


def checks_now(run: Run, primary: Verdict, better: bool = False, decisively: bool = False,
               guardrail: Verdict = Verdict.PASS) -> None:
    due = planned_checks(run.spec, run.status, run.now)
    found = []
    for p in due:
        if p.metric.name == "accuracy":
            found.append(replace(check("accuracy", primary, 0.97, "accuracy 0.97 vs stable 0.95 (n=4,000/4,000): "
                                       "better by 0.02"), better=better, decisively_better=decisively))
        else:
            found.append(check(p.metric.name, guardrail))
    run.tick(checks=tuple(found))


def run_test(run: Run, primary: Verdict, better: bool, until_s: int = 121) -> None:
    """Checks every 10 s from T0+11 to T0+until_s, the primary's verdict as given throughout."""
    for second in range(11, until_s + 1, 10):
        run.now = T0 + dt.timedelta(seconds=second)
        checks_now(run, primary, better=better)


def test_the_spec_parses_into_one_split_step_and_the_primary_reads_the_whole_test() -> None:
    spec = RolloutSpec.parse(ab_spec(weight=30), LIMITS)
    assert spec.strategy is StrategyKind.AB_TEST and spec.ab_test is not None
    assert spec.ab_test.weight == 30 and spec.ab_test.duration_s == 120
    assert [s.weight for s in spec.steps] == [30]
    primary = spec.analysis.metric("accuracy")
    assert primary is not None and primary.window_s == 120


@pytest.mark.parametrize("test, metrics, field", [
    ({"weight": 0}, None, "spec.strategy.abTest.weight"),
    ({"weight": 100}, None, "spec.strategy.abTest.weight"),
    ({"duration": None}, None, "spec.strategy.abTest.duration"),
    ({"duration": "0s"}, None, "spec.strategy.abTest.duration"),
    ({"duration": "200h"}, None, "spec.strategy.abTest.duration"),
    ({"primary": "nope"}, None, "spec.strategy.abTest.primary"),
    ({"primary": "success-rate"}, None, "spec.strategy.abTest.primary"),  # a threshold cannot pick a winner
    ({}, [{**ACCURACY, "window": "30s"}], "spec.strategy.abTest.primary"),  # it reads the whole test
    ({"stopEarly": "yes"}, None, "spec.strategy.abTest.stopEarly"),
    ({"duration": "5s"}, None, "spec.strategy.abTest.duration"),  # shorter than the 10s interval
    ({"primary": "drift"}, [{"name": "drift", "template": "prediction-distribution", "compare": {"maxPSI": 0.2}}],
     "spec.strategy.abTest.primary"),  # a distribution says how different, never which is better
])
def test_an_ab_test_that_cannot_work_is_refused(test: dict[str, Any], metrics: list[dict[str, Any]] | None,
                                                field: str) -> None:
    raw = ab_spec(**{k: v for k, v in test.items() if v is not None})
    if test.get("duration", "") is None:
        del raw["strategy"]["abTest"]["duration"]
    if metrics is not None:
        raw["analysis"]["metrics"] = metrics
    with pytest.raises(SpecError) as refused:
        RolloutSpec.parse(raw, LIMITS)
    assert refused.value.field_path == field


def test_the_split_holds_for_the_whole_duration_even_when_the_candidate_looks_better_early() -> None:
    run = ab_run()
    run_test(run, Verdict.PASS, better=True, until_s=111)
    assert run.status.phase is Phase.PROGRESSING and run.world.candidate_weight == 50
    assert all(c.kind != "adopt" for c in run.world.applied)


def test_a_better_candidate_is_promoted_at_the_end_and_the_event_explains_why() -> None:
    run = ab_run()
    run_test(run, Verdict.PASS, better=True)
    assert run.status.phase is Phase.PROMOTING
    event = next(e for p in run.plans for e in p.events if e.reason == "ABTestCandidateWon")
    assert "2.0.0 beats" in event.message and "better by 0.02" in event.message and "for 2m" in event.message


def test_a_tie_keeps_the_stable_model() -> None:
    run = ab_run()
    run_test(run, Verdict.PASS, better=False)
    assert run.status.phase is Phase.ROLLED_BACK and run.world.applied[-1] == TrafficChange("rollback")
    assert run.status.history[-1].reason == "ABTestStableKept"
    assert "no winner beyond the tolerance" in run.status.message


def test_a_primary_that_measured_both_models_and_decided_neither_way_keeps_the_stable_model() -> None:
    raw = ab_spec()
    raw["analysis"]["inconclusiveLimit"] = 50  # undecided all along: only the end decides
    run = Run(RolloutSpec.parse(raw, LIMITS))
    run.tick()
    run.tick(after=1)
    undecided = replace(check("accuracy", Verdict.INCONCLUSIVE, 0.951, "accuracy 0.951 vs stable 0.950: the evidence "
                              "decides neither way yet"), baseline=0.95)
    for second in range(11, 122, 10):
        run.now = T0 + dt.timedelta(seconds=second)
        due = planned_checks(run.spec, run.status, run.now)
        run.tick(checks=tuple(undecided if p.metric.name == "accuracy" else check(p.metric.name, Verdict.PASS)
                              for p in due))
    assert run.status.phase is Phase.ROLLED_BACK and run.status.history[-1].reason == "ABTestStableKept"
    assert not any(c.kind == "adopt" for c in run.world.applied)


def test_no_data_at_the_decision_is_never_a_tie_the_test_looks_again() -> None:
    """Prometheus away (or too few requests) when the whole test is checked: no decision on that."""
    run = ab_run()
    run_test(run, Verdict.PASS, better=True, until_s=111)
    run.now = T0 + dt.timedelta(seconds=121)
    due = planned_checks(run.spec, run.status, run.now)
    run.tick(checks=tuple(check(p.metric.name, Verdict.INCONCLUSIVE) if p.metric.name == "accuracy"
                          else check(p.metric.name, Verdict.PASS) for p in due))
    assert run.status.phase is Phase.PROGRESSING and "waiting for accuracy's check" in run.status.message
    run.now = T0 + dt.timedelta(seconds=131)
    checks_now(run, Verdict.PASS, better=True)  # measured again over the whole test: the winner
    assert run.status.phase is Phase.PROMOTING


def test_a_check_that_does_not_cover_the_whole_test_decides_nothing() -> None:
    run = ab_run(warmup="30s")  # no window reads T0+1 .. T0+31: the test runs T0+31 .. T0+151
    run_test(run, Verdict.PASS, better=True, until_s=141)
    assert run.status.phase is Phase.PROGRESSING
    run.now = T0 + dt.timedelta(seconds=151)
    checks_now(run, Verdict.PASS, better=True)
    assert run.status.phase is Phase.PROMOTING


def test_a_winner_waits_for_its_guardrails() -> None:
    run = ab_run()
    run_test(run, Verdict.PASS, better=True, until_s=111)
    run.now = T0 + dt.timedelta(seconds=121)
    due = planned_checks(run.spec, run.status, run.now)
    run.tick(checks=tuple(replace(check("accuracy", Verdict.PASS, 0.97, "accuracy 0.97 vs stable 0.95"), better=True)
                          if p.metric.name == "accuracy" else check(p.metric.name, Verdict.INCONCLUSIVE)
                          for p in due))
    assert run.status.phase is Phase.PROGRESSING and "promotion waits for every metric" in run.status.message
    assert not any(c.kind == "adopt" for c in run.world.applied)


def test_a_winner_whose_guardrail_fails_is_never_promoted() -> None:
    run = ab_run()
    for second in range(11, 122, 10):
        run.now = T0 + dt.timedelta(seconds=second)
        checks_now(run, Verdict.PASS, better=True, guardrail=Verdict.FAIL)
        if run.status.phase is not Phase.PROGRESSING:
            break
    assert run.status.phase is Phase.ROLLED_BACK
    assert not any(c.kind == "adopt" for c in run.world.applied)


def test_stop_early_ends_the_test_on_a_decisive_winner() -> None:
    run = ab_run(stopEarly=True)
    run.now = T0 + dt.timedelta(seconds=11)
    checks_now(run, Verdict.PASS, better=True, decisively=True)  # an interim look of the primary
    run.now = T0 + dt.timedelta(seconds=31)
    checks_now(run, Verdict.PASS, better=True, decisively=True)  # the guardrail's full window too
    assert run.status.phase is Phase.PROMOTING
    assert "ABTestCandidateWon" in [r for p in run.plans for r in reasons(p)]


def test_without_stop_early_a_decisive_winner_still_waits_for_the_end() -> None:
    run = ab_run()
    run.now = T0 + dt.timedelta(seconds=31)
    checks_now(run, Verdict.PASS, better=True, decisively=True)
    assert run.status.phase is Phase.PROGRESSING
    assert run.status.message.startswith("A/B test: 2.0.0 serves 50% until 12:02:01Z"), run.status.message


def test_abort_and_promote_still_work() -> None:
    run = ab_run()
    plan = run.tick(after=5, action="abort")
    assert plan.status.phase is Phase.ABORTED and run.world.candidate_weight == 0
    run = ab_run()
    run_test(run, Verdict.PASS, better=False, until_s=41)
    plan = run.tick(after=1, action="promote")
    assert plan.status.phase is Phase.PROMOTING
