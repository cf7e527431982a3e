"""Interim looks, decisive failures and the warm-up (engine/gate.py).

Invariants pinned here:
- a metric whose judge accounts for the sample size is looked at every interval before a full window at
  the current weight exists, over what the candidate served at that weight so far; a point threshold is not;
- an interim look never opens the gate, and an inconclusive one adds to no streak;
- a decisive failure rolls back at once, in an interim look or a full one, whatever the failureLimit;
- no window starts before the candidate's first serving plus the warm-up.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from modelrollout.api import Phase
from modelrollout.engine import TrafficChange, planned_checks
from modelrollout.status import Verdict

from tests.unit.conftest import SUCCESS, T0, Run, check, make_spec, reasons

ACCURACY = {"name": "accuracy", "template": "model-accuracy", "window": "30s", "compare": {"tolerance": 0.02}}
STEPS = [{"setWeight": 10}, {"setWeight": 50}, {"pause": {"duration": "1h"}}]


def serving(metrics: list[dict[str, object]] | None = None, failure_limit: int = 3, inconclusive_limit: int = 3,
            steps: list[dict[str, object]] | None = None, **analysis: object) -> Run:
    """The candidate serves 10% since T0+1; interval 5s; windows 30s."""
    run = Run(make_spec(steps=steps or STEPS, metrics=metrics or [ACCURACY], interval="5s",
                        failureLimit=failure_limit, inconclusiveLimit=inconclusive_limit, **analysis))
    run.tick()
    run.tick(after=1)
    assert run.world.candidate_weight == 10 and run.status.weight_since == T0 + dt.timedelta(seconds=1)
    return run


def planned(run: Run) -> list[tuple[str, float, bool]]:
    return [(p.metric.name, p.window_s, p.interim) for p in planned_checks(run.spec, run.status, run.now)]


def look(run: Run, verdict: Verdict, *, after: float, decisive: bool = False) -> None:
    run.now += dt.timedelta(seconds=after)
    due = planned(run)
    assert due, "nothing was due"
    run.tick(checks=tuple(replace(check(name, verdict), decisive=decisive) for name, _, _ in due))


def test_a_comparison_is_looked_at_every_interval_over_what_the_candidate_served_at_this_weight() -> None:
    run = serving()
    run.now = T0 + dt.timedelta(seconds=5)
    assert planned(run) == []  # one interval of serving has not passed yet
    run.now = T0 + dt.timedelta(seconds=6)
    assert planned(run) == [("accuracy", 5.0, True)]
    look(run, Verdict.PASS, after=0)
    assert planned(run) == []
    run.now += dt.timedelta(seconds=5)
    assert planned(run) == [("accuracy", 10.0, True)]
    run.now = T0 + dt.timedelta(seconds=31)
    assert planned(run) == [("accuracy", 30.0, False)]  # a full window: an ordinary check


def test_a_point_threshold_waits_for_a_full_window() -> None:
    run = serving(metrics=[{**SUCCESS, "window": "30s"}])
    for second in range(2, 31):
        run.now = T0 + dt.timedelta(seconds=second)
        assert planned(run) == [], second
    run.now = T0 + dt.timedelta(seconds=31)
    assert planned(run) == [("success-rate", 30.0, False)]


def test_interim_passes_never_open_the_gate() -> None:
    run = serving()
    for _ in range(5):  # T0+6 .. T0+26: interim looks only
        look(run, Verdict.PASS, after=5)
        assert run.world.candidate_weight == 10
        record = run.status.analysis.record("accuracy")
        assert record is not None and record.interim and record.verdict is Verdict.PASS
    look(run, Verdict.PASS, after=5)  # T0+31: the first full window at 10%
    run.tick()
    assert run.world.candidate_weight == 50


def test_an_inconclusive_interim_look_adds_to_no_streak_but_a_failed_one_does() -> None:
    run = serving()
    for _ in range(4):  # more than inconclusiveLimit 3
        look(run, Verdict.INCONCLUSIVE, after=5)
    assert run.status.phase is Phase.PROGRESSING
    record = run.status.analysis.record("accuracy")
    assert record is not None and record.inconclusive == 0
    look(run, Verdict.FAIL, after=5)
    record = run.status.analysis.record("accuracy")
    assert record is not None and record.failures == 1 and run.status.phase is Phase.PROGRESSING


def test_a_decisive_interim_failure_rolls_back_at_once() -> None:
    run = serving(failure_limit=3)
    run.now = T0 + dt.timedelta(seconds=6)
    due = planned(run)
    plan = run.tick(checks=(replace(check("accuracy", Verdict.FAIL, 0.8, "accuracy 0.80 vs stable 0.97"),
                                    decisive=True),))
    assert plan.status.phase is Phase.ROLLED_BACK and plan.traffic == TrafficChange("rollback")
    assert due == [("accuracy", 5.0, True)]
    event = next(e for e in plan.events if e.reason == "RolledBack")
    assert "at once" in event.message and "99.9% confidence in an interim look" in event.message
    record = plan.status.analysis.record("accuracy")
    assert record is not None and record.decisive and record.interim and record.failures == 1


def test_a_decisive_failure_in_a_full_window_rolls_back_at_once_too() -> None:
    run = serving(metrics=[{**SUCCESS, "window": "30s", "confidence": 0.95}], failure_limit=5)
    look(run, Verdict.PASS, after=30)  # T0+31
    run.tick()
    assert run.world.candidate_weight == 50
    run.now += dt.timedelta(seconds=40)
    assert planned(run) == [("success-rate", 40.0, False)]  # all 40 s at 50%: more than a full window
    look(run, Verdict.FAIL, after=0, decisive=True)
    assert run.status.phase is Phase.ROLLED_BACK
    assert "RolledBack" in reasons(run.plans[-1])


def test_a_failure_that_is_not_decisive_waits_for_the_failure_limit() -> None:
    run = serving(failure_limit=3)
    look(run, Verdict.FAIL, after=5)
    look(run, Verdict.FAIL, after=5)
    assert run.status.phase is Phase.PROGRESSING
    look(run, Verdict.FAIL, after=5)
    assert run.status.phase is Phase.ROLLED_BACK


def test_no_window_reads_the_warm_up() -> None:
    run = serving(metrics=[ACCURACY, {**SUCCESS, "window": "30s"}], warmup="10s")  # serving since T0+1
    for second in range(2, 16):
        run.now = T0 + dt.timedelta(seconds=second)
        assert planned(run) == [], second
    run.now = T0 + dt.timedelta(seconds=16)
    assert planned(run) == [("accuracy", 5.0, True)]  # reads T0+11 .. T0+16
    look(run, Verdict.PASS, after=0)
    run.now = T0 + dt.timedelta(seconds=40)
    assert [p for p in planned(run) if p[0] == "success-rate"] == []
    run.now = T0 + dt.timedelta(seconds=41)
    assert ("success-rate", 30.0, False) in planned(run)  # reads T0+11 .. T0+41


def test_an_undecided_metric_reads_everything_the_candidate_served_at_this_weight() -> None:
    """Evidence accumulates while a comparison cannot decide (a low-traffic candidate): the check after an
    inconclusive full one reads from the start of the weight, and a pass over that counts for the gate."""
    run = serving(failure_limit=3)
    look(run, Verdict.INCONCLUSIVE, after=30)  # T0+31: the first full window, too few samples
    run.now = T0 + dt.timedelta(seconds=36)
    assert planned(run) == [("accuracy", 35.0, False)]  # T0+1 .. T0+36
    look(run, Verdict.PASS, after=0)
    run.tick()
    assert run.world.candidate_weight == 50


def test_after_a_pass_at_a_weight_the_window_slides_again() -> None:
    run = serving(failure_limit=3, steps=[{"setWeight": 10}, {"pause": {"duration": "1h"}}])
    look(run, Verdict.PASS, after=30)  # T0+31: earned at 10%
    run.now = T0 + dt.timedelta(seconds=36)
    assert planned(run) == [("accuracy", 30.0, False)]


def test_the_accumulated_window_is_bounded() -> None:
    run = serving(inconclusive_limit=100)
    windows = []
    for _ in range(80):  # 400 s at 10%, inconclusive all along
        run.now += dt.timedelta(seconds=5)
        windows += [w for _, w, _ in planned(run)]
        run.tick(checks=tuple(check(name, Verdict.INCONCLUSIVE) for name, _, _ in planned(run)))
    assert run.status.phase is Phase.PROGRESSING
    assert max(windows) == 10 * 30 and windows[-1] == 10 * 30


def test_after_a_failure_at_this_weight_the_window_slides_and_a_later_fault_is_not_diluted() -> None:
    """A Pass, then a fault: the check after the failure reads the metric's own window, not everything since
    the weight began (where the earlier good data would outweigh the fault and a Pass would open the gate)."""
    run = serving(failure_limit=2, steps=[{"setWeight": 10}, {"pause": {"duration": "180s"}}, {"setWeight": 50}])
    look(run, Verdict.PASS, after=30)  # T0+31: earned at 10%
    for _ in range(14):  # passes every 5 s until T0+101
        look(run, Verdict.PASS, after=5)
    look(run, Verdict.FAIL, after=5)  # T0+106: the fault shows in the sliding window
    run.now += dt.timedelta(seconds=5)
    assert planned(run) == [("accuracy", 30.0, False)]
    record = run.status.analysis.record("accuracy")
    assert record is not None and record.failures == 1


def test_a_weight_that_was_decided_once_never_grows_its_window_again() -> None:
    run = serving(failure_limit=5, inconclusive_limit=10)
    look(run, Verdict.FAIL, after=30)  # T0+31: the first full check fails
    look(run, Verdict.INCONCLUSIVE, after=5)  # then one without enough data
    run.now += dt.timedelta(seconds=5)
    assert planned(run) == [("accuracy", 30.0, False)]


def test_an_undecided_check_on_measured_data_adds_to_no_streak_while_evidence_gathers() -> None:
    """A healthy candidate whose comparison straddles the tolerance for a while: each check reads more of
    its weight and is not "no data"; it may not be rolled back for being hard to tell apart."""
    run = serving(inconclusive_limit=3)
    measured = replace(check("accuracy", Verdict.INCONCLUSIVE, 0.95, "accuracy 0.95 vs stable 0.96: undecided"),
                       baseline=0.96)
    for _ in range(10):  # T0+31 .. T0+76: full checks over 30 s .. 75 s, all undecided
        run.now += dt.timedelta(seconds=30 if run.status.analysis.record("accuracy") is None else 5)
        run.tick(checks=(measured,) if planned(run) else None)
    assert run.status.phase is Phase.PROGRESSING
    record = run.status.analysis.record("accuracy")
    assert record is not None and record.inconclusive == 0


def test_a_check_without_data_counts_even_while_the_window_grows() -> None:
    run = serving(inconclusive_limit=3)
    look(run, Verdict.INCONCLUSIVE, after=30)  # no value: no data
    look(run, Verdict.INCONCLUSIVE, after=5)
    look(run, Verdict.INCONCLUSIVE, after=5)
    assert run.status.phase is Phase.ROLLED_BACK


def test_undecided_evidence_counts_again_once_the_window_reached_its_cap() -> None:
    run = serving(inconclusive_limit=3)
    measured = replace(check("accuracy", Verdict.INCONCLUSIVE, 0.95, "undecided"), baseline=0.96)
    for _ in range(200):
        run.now += dt.timedelta(seconds=5)
        due = planned(run)
        run.tick(checks=(measured,) if due else None)
        if run.status.phase is not Phase.PROGRESSING:
            break
    assert run.status.phase is Phase.ROLLED_BACK
    assert run.now >= T0 + dt.timedelta(seconds=1 + 10 * 30)  # not before ten windows of evidence
