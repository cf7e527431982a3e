"""The per-metric ledger and the gate: which checks are due, what they earned, when they roll back.

Invariants this module keeps (each pinned by tests in tests/unit/test_engine_gate.py):
- Every defined metric has its own latest record for this revision; a check of one metric never
  changes another metric's record, and only a metric's own Pass clears its streaks.
- A Pass counts for the gate ("fresh") only when its window is the metric's full window, started at or
  after the candidate began serving at the current weight (and, on an analysis step, at or after the
  step began); an interim look never opens the gate, except an A/B test's primary with stopEarly that is
  better at the interim confidence.
- No check's window reaches back before this revision's candidate first served plus the warm-up: the
  first full check of a metric is due one full window after that moment.
- A decisive failure (one that holds at the interim confidence) rolls back at once; an interim look
  that is inconclusive adds to no streak (too early to tell is not "no data"), nor does a full check that
  measured the candidate but could not decide while its window still grows (up to
  ``MAX_ACCUMULATED_WINDOWS``): evidence is gathering. A check without data always counts.

Interim looks: a metric whose judge accounts for the sample size (``AnalysisSpec.looks_early``) is
checked every interval before a full window at the current weight exists, over what the candidate
served at that weight so far; while its full checks there stay inconclusive, they go on reading all of
it (evidence accumulates instead of sliding away); once one passed or failed, the window slides. An
interim look's failure counts for the failure streak like any other (its judge accounts for the sample
size); one that holds at the interim confidence (Haybittle-Peto's p < 0.001 of group-sequential
trials) is decisive and rolls back at once, so a gross fault is caught in a few intervals instead of a
window and a failure streak.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from ..api import INTERIM_CONFIDENCE, Metric, Phase, RolloutSpec, StepKind
from ..status import CheckRecord, ConditionType, Reason, RolloutStatus, Verdict
from .context import ACTIVE_PHASES, Tick, current_step, step_metric_names, whole_seconds

# ------------------------------------------------------------------ when checks run

# While a metric has not passed at a weight, its checks read everything the candidate served there, up to
# this many of its windows: a comparison that cannot decide on one window gathers evidence instead of
# running into the inconclusiveLimit on a low-traffic candidate.
MAX_ACCUMULATED_WINDOWS = 10


@dataclass(frozen=True)
class PlannedCheck:
    """One check the handler runs this tick: which metric, how far back it reads, and whether it is an
    interim look (a window shorter than the metric's)."""

    metric: Metric
    window_s: float
    interim: bool = False
    gathering: bool = False  # a full read still growing at this weight (below its cap): evidence gathers


def planned_checks(spec: RolloutSpec, status: RolloutStatus, now: dt.datetime) -> tuple[PlannedCheck, ...]:
    """The checks the handler must run before calling ``decide`` this tick (empty: none are due)."""
    if not _analysing(status):
        return ()
    now = whole_seconds(now)
    planned = []
    for metric in metrics_now(spec, status):
        if now < next_check_at(spec, status, metric):
            continue
        growing = _growing_check(spec, status, metric, now)
        planned.append(growing or PlannedCheck(metric, spec.analysis.window_s(metric)))
    return tuple(planned)


def metrics_due(spec: RolloutSpec, status: RolloutStatus, now: dt.datetime) -> tuple[Metric, ...]:
    return tuple(p.metric for p in planned_checks(spec, status, now))


def analysis_start(spec: RolloutSpec, status: RolloutStatus) -> dt.datetime:
    """The earliest moment any check reads: the candidate's first serving in this revision plus the warm-up."""
    assert status.serving_since is not None
    return status.serving_since + dt.timedelta(seconds=spec.analysis.warmup_s)


def next_check_at(spec: RolloutSpec, status: RolloutStatus, metric: Metric) -> dt.datetime:
    """When this metric is next checked: every interval, and as soon as a full window at the current
    weight exists when its latest record does not count for the gate yet; never before one full window
    after the analysis start, except for interim looks (one interval and the shortest window after the
    candidate served the current weight)."""
    window = dt.timedelta(seconds=spec.analysis.window_s(metric))
    first = analysis_start(spec, status) + window
    record = status.analysis.record(metric.name)
    if record is None or record.at is None:
        due = first
    else:
        due = max(first, record.at + dt.timedelta(seconds=spec.analysis.interval_s))
        bound = fresh_bound(spec, status, metric.name)
        if not is_fresh_pass(spec, status, metric.name) and bound is not None:
            fresh_at = max(bound, analysis_start(spec, status)) + window
            if fresh_at > record.at:
                due = min(due, max(first, fresh_at))
    interim = _interim_due(spec, status, metric, record)
    return min(due, interim) if interim is not None else due


def _interim_start(spec: RolloutSpec, status: RolloutStatus, metric: Metric) -> dt.datetime | None:
    """Where a growing read of this metric starts: the moment the candidate served the current weight (after
    the warm-up, and within an analysis step). None once a full check at this weight decided anything: after
    a Pass or a Fail the window slides, so a fault that begins later is never diluted by earlier good data."""
    bound = fresh_bound(spec, status, metric.name)
    if bound is None or not spec.analysis.looks_early(metric):
        return None
    start = max(bound, analysis_start(spec, status))
    record = status.analysis.record(metric.name)
    if (record is not None and record.window_start is not None and record.weight == status.candidate_weight
            and record.window_start >= start):
        # A check at this weight exists: grow only if it was a growing read (from the start, or longer than
        # the metric's window: capped at MAX_ACCUMULATED_WINDOWS) and decided nothing.
        from_start = record.window_start - start < dt.timedelta(seconds=1)
        longer = record.at is not None and (record.at - record.window_start).total_seconds() > (
            spec.analysis.window_s(metric) + 1)
        if not (from_start or longer) or (not record.interim and record.verdict is not Verdict.INCONCLUSIVE):
            return None
    return start


def _growing_check(spec: RolloutSpec, status: RolloutStatus, metric: Metric, now: dt.datetime) -> PlannedCheck | None:
    """A check at ``now`` that reads all the candidate served at this weight, up to ``MAX_ACCUMULATED_WINDOWS``
    windows: an interim look while that is shorter than a window, gathering until it reaches the cap.
    None: the metric's own sliding window."""
    start = _interim_start(spec, status, metric)
    if start is None:
        return None
    read = (now - start).total_seconds()
    window = spec.analysis.window_s(metric)
    if read < _shortest_interim_s(spec):
        return None
    if read < window:
        return PlannedCheck(metric, read, interim=True)
    cap = MAX_ACCUMULATED_WINDOWS * window
    return PlannedCheck(metric, min(read, cap), gathering=read < cap)


def _shortest_interim_s(spec: RolloutSpec) -> float:
    """An interim look reads at least one interval and the shortest window rate() can read."""
    return max(spec.analysis.interval_s, spec.analysis.min_window_s, 1.0)


def _interim_due(spec: RolloutSpec, status: RolloutStatus, metric: Metric,
                 record: CheckRecord | None) -> dt.datetime | None:
    start = _interim_start(spec, status, metric)
    if start is None:
        return None
    interval = dt.timedelta(seconds=spec.analysis.interval_s)
    due = start + dt.timedelta(seconds=_shortest_interim_s(spec))
    if record is not None and record.at is not None:
        due = max(due, record.at + interval)
    full = start + dt.timedelta(seconds=spec.analysis.window_s(metric))
    return due if due < full else None


def next_due(spec: RolloutSpec, status: RolloutStatus) -> dt.datetime | None:
    metrics = metrics_now(spec, status)
    if not _analysing(status) or not metrics:
        return None
    return min(next_check_at(spec, status, m) for m in metrics)


def metrics_now(spec: RolloutSpec, status: RolloutStatus) -> tuple[Metric, ...]:
    """The metrics that measure the candidate as it serves now: a shadow-only one (agreement of mirrored
    answers) only while it is a shadow; once it is live nothing is mirrored and there is nothing to read."""
    if status.candidate_mirror > 0:
        return spec.analysis.metrics
    return tuple(m for m in spec.analysis.metrics if not m.shadow_only)


def _analysing(status: RolloutStatus) -> bool:
    """Checks run while the candidate serves traffic (live, or mirrored to it as a shadow) in an active phase
    and no promotion write began."""
    if status.phase not in ACTIVE_PHASES or status.promotion_started_at is not None:
        return False
    return (status.weight_since is not None and status.serving_since is not None
            and (status.candidate_weight > 0 or status.candidate_mirror > 0))


# ------------------------------------------------------------------ what counts for the gate


def fresh_bound(spec: RolloutSpec, status: RolloutStatus, metric: str) -> dt.datetime | None:
    """A Pass of this metric counts only if its window starts at or after this (None: nothing counts)."""
    bound = status.weight_since
    if bound is None:
        return None
    if spec.ab_test is not None and status.step_started_at is not None and status.phase is Phase.PROGRESSING:
        bound = max(bound, status.step_started_at)  # an A/B test edited mid-way starts again: so does evidence
    step = current_step(spec, status)
    if (status.phase is Phase.PROGRESSING and step is not None and step.kind is StepKind.ANALYSIS
            and metric in step_metric_names(spec, step) and status.step_started_at is not None):
        bound = max(bound, status.step_started_at)
    return bound


def is_fresh_pass(spec: RolloutSpec, status: RolloutStatus, metric: str) -> bool:
    record = status.analysis.record(metric)
    bound = fresh_bound(spec, status, metric)
    if record is not None and record.interim and not _decisive_winner(spec, record):
        return False
    return (record is not None and bound is not None and record.verdict is Verdict.PASS
            and record.weight == status.candidate_weight and record.window_start is not None
            and record.window_start >= bound)


def _decisive_winner(spec: RolloutSpec, record: CheckRecord) -> bool:
    """An A/B test with stopEarly: its primary's look that is better at the interim confidence has earned
    the split before the whole test's window (the one interim look that counts)."""
    test = spec.ab_test
    return test is not None and test.stop_early and record.metric == test.primary and record.decisively_better


def unearned(spec: RolloutSpec, status: RolloutStatus, names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The metrics (all defined ones unless named) without a fresh Pass at the current weight."""
    applies = {m.name for m in metrics_now(spec, status)}
    wanted = names if names is not None else tuple(m.name for m in spec.analysis.metrics)
    return tuple(n for n in wanted if n in applies and not is_fresh_pass(spec, status, n))


def gate_open(spec: RolloutSpec, status: RolloutStatus) -> bool:
    """The candidate may get more traffic (or be promoted): every metric passed at the current weight."""
    return not unearned(spec, status)


def describe_unearned(spec: RolloutSpec, status: RolloutStatus, now: dt.datetime,
                      names: tuple[str, ...] | None = None) -> str:
    """Why the gate is closed, metric by metric, in words."""
    parts = []
    for name in unearned(spec, status, names):
        record = status.analysis.record(name)
        metric = spec.analysis.metric(name)
        if status.weight_since is None:
            parts.append(f"{name}: the candidate is not serving at {status.candidate_weight}% yet")
        elif record is not None and record.verdict is not Verdict.PASS:
            parts.append(record.message)
        elif metric is not None and status.serving_since is not None:
            wait = max(0, int((next_check_at(spec, status, metric) - now).total_seconds()))
            parts.append(f"{name}: waiting for a check over a full window at {status.candidate_weight}% "
                         f"(in {wait}s)")
        else:
            parts.append(f"{name}: not checked yet")
    return "; ".join(parts)


# ------------------------------------------------------------------ recording results


def record_checks(tick: Tick, spec: RolloutSpec) -> tuple[Reason | None, str]:
    """Fold this tick's check results into the ledger. Returns (reason, message) of a rollback, or
    (None, "") when the results do not roll the candidate back."""
    # Only results of checks that were due count: a result nobody asked for (a late answer after the
    # promotion was decided, a duplicate) is not evidence about the candidate at this weight.
    planned = {p.metric.name: p for p in planned_checks(spec, tick.initial, tick.now)}
    checks = [c for c in tick.obs.checks or () if c.metric in planned]
    defined = {m.name for m in spec.analysis.metrics}
    ledger = {r.metric: r for r in tick.status.analysis.last_checks if r.metric in defined}
    for check in checks:
        plan = planned[check.metric]
        previous = ledger.get(check.metric)
        failures = previous.failures if previous else 0
        inconclusive = previous.inconclusive if previous else 0
        if check.verdict is Verdict.PASS:
            failures = inconclusive = 0
        elif check.verdict is Verdict.FAIL:
            failures += 1
        elif plan.interim or (plan.gathering and check.value is not None):
            pass  # too early to tell, or measured but undecided while evidence still gathers: not "no data"
        else:
            inconclusive += 1
        ledger[check.metric] = replace(
            check, error="", at=tick.now, window_start=tick.now - dt.timedelta(seconds=plan.window_s),
            weight=tick.status.candidate_weight, failures=failures, inconclusive=inconclusive,
            interim=plan.interim, decisive=check.decisive and check.verdict is Verdict.FAIL)
    order = [m.name for m in spec.analysis.metrics if m.name in ledger]
    records = tuple(ledger[n] for n in order)
    last_run = tick.now if checks else tick.status.analysis.last_run_at
    tick.update(analysis=type(tick.status.analysis)(last_run_at=last_run, last_checks=records))
    if not checks:
        return None, ""
    return _judge_streaks(tick, spec, checks_now=tuple(ledger[c.metric] for c in checks))


def _judge_streaks(tick: Tick, spec: RolloutSpec, checks_now: tuple[CheckRecord, ...]) -> tuple[Reason | None, str]:
    limits = spec.analysis
    records = tick.status.analysis.last_checks
    failing = [r for r in records if r.failures >= limits.failure_limit]
    blind = [r for r in records if r.inconclusive >= limits.inconclusive_limit]
    decisive = [r for r in checks_now if r.decisive]
    _conditions(tick)
    if decisive:
        detail = "; ".join(f"{r.message} (a decisive failure: it holds at {INTERIM_CONFIDENCE:.1%} confidence"
                           f"{' in an interim look' if r.interim else ''})" for r in decisive)
        return Reason.ANALYSIS_FAILED, (f"Rolled back {spec.candidate.version} at once: {detail}; failureLimit "
                                        f"{limits.failure_limit} is for borderline failures.")
    if failing:
        detail = "; ".join(f"{r.message} ({r.failures} consecutive failed checks since its last pass)"
                           for r in failing)
        return Reason.ANALYSIS_FAILED, (f"Rolled back {spec.candidate.version}: {detail}; "
                                        f"failureLimit {limits.failure_limit}.")
    if blind:
        detail = "; ".join(f"{r.message} ({r.inconclusive} consecutive inconclusive checks since its last pass)"
                           for r in blind)
        return Reason.ANALYSIS_INCONCLUSIVE, (f"Rolled back {spec.candidate.version}: analysis was inconclusive "
                                              "and no data is never a pass (nor is evidence that decides "
                                              f"nothing): {detail}; inconclusiveLimit {limits.inconclusive_limit}.")
    _report(tick, spec, checks_now)
    return None, ""


def _report(tick: Tick, spec: RolloutSpec, checks_now: tuple[CheckRecord, ...]) -> None:
    """Conditions and Events for a tick whose checks did not roll back."""
    limits = spec.analysis
    failed = [r for r in checks_now if r.verdict is Verdict.FAIL]
    blind = [r for r in checks_now if r.verdict is Verdict.INCONCLUSIVE]
    if failed:
        tick.emit("Warning", Reason.ANALYSIS_FAILED,
                  f"Analysis of {spec.candidate.version} failed; the weight holds until each metric passes "
                  f"again (rollback at failureLimit {limits.failure_limit}): "
                  + "; ".join(f"{r.message} ({r.failures} since its last pass)" for r in failed) + ".")
    if blind:
        tick.emit("Warning", Reason.ANALYSIS_INCONCLUSIVE,
                  f"Analysis of {spec.candidate.version} was inconclusive; the weight holds (rollback at "
                  f"inconclusiveLimit {limits.inconclusive_limit}): "
                  + "; ".join(f"{r.message} ({r.inconclusive} since its last pass)" for r in blind) + ".")
    records = tick.status.analysis.last_checks
    if not failed and not blind and all(r.verdict is Verdict.PASS for r in records) and tick.initial_healthy != "True":
        tick.emit("Normal", Reason.ANALYSIS_PASSED, f"All {len(records)} metric(s) of {spec.candidate.version} "
                  "passed their latest check.")


def _conditions(tick: Tick) -> None:
    """AnalysisHealthy from the ledger: False if a metric's latest check failed, Unknown if one had no
    answer, True when every checked metric's latest check passed."""
    records = tick.status.analysis.last_checks
    not_passing = [r for r in records if r.verdict is Verdict.FAIL]
    unknown = [r for r in records if r.verdict is Verdict.INCONCLUSIVE]
    if not_passing:
        tick.condition(ConditionType.HEALTHY, "False", Reason.CHECKS_FAILED,
                       "; ".join(r.message for r in not_passing))
    elif unknown:
        tick.condition(ConditionType.HEALTHY, "Unknown", Reason.CHECKS_INCONCLUSIVE,
                       "; ".join(r.message for r in unknown))
    else:
        tick.condition(ConditionType.HEALTHY, "True", Reason.CHECKS_PASSED, "; ".join(r.message for r in records))


def blocking_verdicts(status: RolloutStatus) -> str:
    """Latest records that are not a Pass, in words ("" when every record passed)."""
    return "; ".join(r.message for r in status.analysis.last_checks if r.verdict is not Verdict.PASS)
