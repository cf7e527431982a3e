"""A/B test: the candidate and the stable model serve a fixed split for a declared duration; then the primary
metric's comparison over the whole test picks the winner.

- The split is the strategy's one step (``setWeight``): the first weight is free, as in canary.
- Guardrails (every other metric) are checked all along by the shared gate and roll back at their limits;
  a decisive failure of the primary (the candidate clearly worse) rolls back at once, as any metric's.
- At the end the candidate is promoted only when the primary says it is *better* than the stable beyond
  the metric's tolerance (the same comparison the other way round) and every metric passed at the split;
  a tie (not worse, not better) or a worse candidate keeps the stable model and removes the candidate.
- With ``stopEarly`` the test ends as soon as the primary is better at the interim confidence.
The test's clock is serving time at the split (``weight_since``), like every clock here.
"""

from __future__ import annotations

import datetime as dt

from ..api import ABTest, Phase, RolloutSpec, format_duration
from ..status import CheckRecord, Reason, Verdict
from . import gate, promotion, revisions, steps
from .context import Tick, seconds_between


class ABTestStrategy:
    def progress(self, tick: Tick, spec: RolloutSpec) -> None:
        test = spec.ab_test
        assert test is not None
        version = spec.candidate.version
        if not steps.weight_in_place(tick, spec, test.weight):
            steps.hold(tick, spec, test.weight)
            tick.update(message=f"A/B test: shifting {test.weight}% of traffic to {version}")
            return
        serving = steps.serving_clock_start(tick, spec)
        if serving is None:
            tick.update(message=f"A/B test: the {format_duration(test.duration_s)} test starts once "
                                f"{version} serves {test.weight}%")
            return
        # The test's clock: serving time at the split, after the warm-up (no check reads the warm-up).
        started = max(serving, gate.analysis_start(spec, tick.status))
        ends = started + dt.timedelta(seconds=test.duration_s)
        latest = tick.status.analysis.record(test.primary)
        early = (test.stop_early and latest is not None and _about_this_test(tick, latest, started)
                 and latest.verdict is Verdict.PASS and latest.decisively_better)
        if tick.now < ends and not early:
            tick.wake_within(seconds_between(tick.now, ends))
            tick.update(message=f"A/B test: {version} serves {test.weight}% until {ends.strftime('%H:%M:%SZ')}"
                                + (f"; {latest.message}" if latest is not None else ""))
            return
        covering = latest is not None and (early or _covers_the_test(tick, latest, started, test))
        if latest is None or not covering or not _measured(latest):
            # No measurement of the whole test yet (the check comes, or had no data): look again; the
            # inconclusiveLimit ends a test that cannot be measured, a tie is never decided on no data.
            # decide() wakes the rollout when that check is due (and within an interval).
            tick.update(message=f"A/B test of {version} ended; waiting for {test.primary}'s check over the "
                                "whole test" + (f" ({latest.message})" if latest is not None else ""))
            return
        self._decide(tick, spec, test, latest, seconds_between(started, tick.now))

    def paused(self, tick: Tick, spec: RolloutSpec) -> None:
        test = spec.ab_test
        assert test is not None
        steps.hold(tick, spec, test.weight)
        steps.paused(tick, spec)

    def _decide(self, tick: Tick, spec: RolloutSpec, test: ABTest, primary: CheckRecord, ran_s: float) -> None:
        version, stable = spec.candidate.version, tick.status.stable_version or spec.stable_predictor
        ran = format_duration(ran_s)
        if primary.verdict is Verdict.PASS and primary.better:
            guardrails = gate.unearned(spec, tick.status)  # the primary too: a full window, or a decisive win
            if guardrails:
                why = gate.describe_unearned(spec, tick.status, tick.now, guardrails)
                steps.holding(tick, spec, f"A/B test: {version} won on {test.primary}; promotion waits for every "
                                          f"metric: {why}")
                return
            tick.emit("Normal", Reason.AB_TEST_CANDIDATE_WON,
                      f"A/B test ({test.weight}% / {100 - test.weight}% for {ran}): {version} beats {stable} on "
                      f"{primary.message}; it becomes the stable model.")
            promotion.begin(tick, spec, requested=False)
            promotion.promote(tick, spec)
            return
        if primary.verdict is Verdict.FAIL:
            why = f"{stable} beats {version}"
        else:
            why = f"no winner beyond the tolerance, so {stable} stays"
        message = (f"A/B test ({test.weight}% / {100 - test.weight}% for {ran}): {why}: {primary.message}; "
                   f"{version} is removed.")
        tick.emit("Normal", Reason.AB_TEST_STABLE_KEPT, message)
        revisions.roll_back(tick, Phase.ROLLED_BACK, Reason.AB_TEST_STABLE_KEPT, message)


def _about_this_test(tick: Tick, record: CheckRecord, started: dt.datetime) -> bool:
    """The record is about this test at this split: taken at the split, reading nothing from before the test."""
    return (record.weight == tick.status.candidate_weight and record.window_start is not None
            and record.window_start >= started - dt.timedelta(seconds=1))


def _covers_the_test(tick: Tick, record: CheckRecord, started: dt.datetime, test: ABTest) -> bool:
    """A full check whose window is the whole test: from its start, at least the duration long."""
    if record.interim or record.at is None or not _about_this_test(tick, record, started):
        return False
    assert record.window_start is not None
    return (record.window_start <= started + dt.timedelta(seconds=1)
            and (record.at - record.window_start).total_seconds() >= test.duration_s - 1)


def _measured(record: CheckRecord) -> bool:
    """A verdict on numbers from both models: a Pass, a Fail, or a comparison that decided neither way on
    measured rates; not a check that had no data or could not ask."""
    return record.verdict is not Verdict.INCONCLUSIVE or (record.value is not None and record.baseline is not None)
