"""Readings are held, decisions are written: a pass after a pass waits for the status heartbeat.

A steady operator's writes are mostly the same verdict again with new times and values. Holding those in
the cache (``Reconciler.status_heartbeat_s``) must change nothing the API server's readers or a restarted
operator rely on:
- every change beyond readings (a phase, weight, verdict, streak, condition status) is on the API server
  when its tick ends;
- decisions are the same with and without holding, even when a held status is lost (a watch event
  replaces the cache's copy with the API server's);
- held readings reach the API server within the heartbeat, and holding makes no check early or late.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import random
from dataclasses import dataclass, fields, replace
from typing import Any

import pytest
from modelrollout.analysis import StaticTemplates
from modelrollout.api import Limits, Phase
from modelrollout.cache import ObjectCache
from modelrollout.engine import Event, Plan
from modelrollout.reconcile import Conflict, Reconciler
from modelrollout.status import (
    AnalysisStatus,
    CheckRecord,
    Condition,
    ConditionType,
    HistoryEntry,
    Reason,
    RolloutStatus,
    Verdict,
    only_readings_differ,
    without_readings,
)
from modelrollout.store import CachedStore
from modelrollout.traffic import TrafficChange

from tests.unit.conftest import spec_dict
from tests.unit.fakes import NAME, NAMESPACE, Cluster
from tests.unit.test_reconcile import _earned

HEARTBEAT_S = 60.0
SUCCESS = {"name": "success-rate", "template": "request-success-rate", "min": 0.99}
LATENCY = {"name": "latency-p99", "template": "request-duration-p99", "max": 0.25}


@dataclass
class Run:
    cluster: Cluster
    cache: ObjectCache
    reconciler: Reconciler

    @classmethod
    def make(cls, spec: dict[str, Any], heartbeat_s: float) -> Run:
        return cls.make_on(Cluster.make(spec), heartbeat_s)

    @classmethod
    def make_on(cls, cluster: Cluster, heartbeat_s: float) -> Run:
        cache = ObjectCache()
        reconciler = Reconciler(store=CachedStore(cluster.store, cache), backends={"SeldonDeployment": cluster.seldon},
                                events=cluster.events, templates=StaticTemplates(),
                                provider_for=lambda _: cluster.prometheus, limits=Limits(scrape_interval_s=1.0),
                                clock=lambda: cluster.now, status_heartbeat_s=heartbeat_s)
        return cls(cluster, cache, reconciler)

    def tick(self) -> float | None:
        self.cluster.now += dt.timedelta(seconds=1)
        return asyncio.run(self.reconciler.tick(NAMESPACE, NAME))

    @property
    def on_record(self) -> RolloutStatus:
        return self.cluster.store.status

    @property
    def held(self) -> RolloutStatus:
        obj = self.cache.get(NAMESPACE, NAME)
        return RolloutStatus.from_dict((obj or {}).get("status"))

    def lose_held_status(self) -> None:
        """A watch event (or a re-list) brings the API server's copy at the same resourceVersion."""
        self.cache.put(copy.deepcopy(self.cluster.store.obj))

    def status_writes(self) -> int:
        return sum(1 for entry in self.cluster.store.log if entry.startswith("status:"))


def _held_at_ten_percent() -> dict[str, Any]:
    return spec_dict([{"setWeight": 10}, {"pause": {}}], [SUCCESS, LATENCY], interval="10s")


def _steady(heartbeat_s: float, ticks: int) -> tuple[Run, int, list[float]]:
    """Ticks once a second with every check passing at a new value; returns the run, the status writes
    made after the first pass was on record, and the age of the API server's readings at every tick."""
    run = Run.make(_held_at_ten_percent(), heartbeat_s)
    for _ in range(100):
        if run.on_record.analysis.last_checks:
            break
        run.tick()
    assert run.on_record.analysis.last_checks, "no check on record after 100 s"
    writes_before, ages = run.status_writes(), []
    for i in range(ticks):
        run.cluster.prometheus.success_rate = 0.995 + (i % 5) * 0.001
        run.tick()
        last_run = run.on_record.analysis.last_run_at
        assert last_run is not None
        ages.append((run.cluster.now - last_run).total_seconds())
    return run, run.status_writes() - writes_before, ages


def test_a_pass_after_a_pass_is_written_at_the_heartbeat_and_no_check_moves() -> None:
    every, writes_every, _ = _steady(0.0, 600)
    held, writes_held, ages = _steady(HEARTBEAT_S, 600)
    # 600 s of checks every 10 s: 60 writes without holding, one per heartbeat with it.
    assert writes_every >= 59
    assert 600 / HEARTBEAT_S - 1 <= writes_held <= 600 / HEARTBEAT_S + 1
    # What the API server shows is never older than a heartbeat plus one interval.
    assert max(ages) <= HEARTBEAT_S + 10
    # The next tick decides from the held copy: no check is made early (or skipped).
    assert held.cluster.prometheus.queries == every.cluster.prometheus.queries
    assert held.held.analysis.last_run_at == every.on_record.analysis.last_run_at
    assert only_readings_differ(held.on_record, held.held) or held.on_record == held.held


def _flapping(seed: int) -> list[tuple[float, float, bool]]:
    """A candidate whose success rate, latency and Prometheus come and go: (success, latency, down) per tick."""
    rng = random.Random(seed)
    plan: list[tuple[float, float, bool]] = []
    while len(plan) < 1200:
        if rng.random() < 0.75:  # healthy for a while
            plan.extend([(rng.choice([1.0, 0.999, 0.995]), rng.choice([0.05, 0.1]), False)] * rng.randint(20, 120))
        else:  # a dip: errors, slowness or no Prometheus, for one to a few checks
            fault = (rng.choice([0.98, 0.95, 1.0]), rng.choice([0.05, 0.3]), rng.random() < 0.3)
            plan.extend([fault] * rng.randint(5, 45))
    return plan


def _scenario(seed: int, heartbeat_s: float, lose_every: int = 0,
              restart_every: int = 0) -> tuple[Run, list[tuple[str, int]]]:
    steps = [{"setWeight": 10}, {"pause": {"duration": "2m"}}, {"setWeight": 30}, {"pause": {"duration": "2m"}},
             {"setWeight": 60}, {"pause": {"duration": "2m"}}]
    spec = spec_dict(steps, [SUCCESS, LATENCY], interval="10s", failureLimit=4, inconclusiveLimit=5)
    run = Run.make(spec, heartbeat_s)
    for i, (success, latency, down) in enumerate(_flapping(seed)):
        run.cluster.prometheus.success_rate, run.cluster.prometheus.latency_s = success, latency
        run.cluster.prometheus.down = down
        run.tick()
        # Beyond readings, the API server holds what this tick decided.
        assert without_readings(run.on_record) == without_readings(run.held), f"tick {i}"
        if lose_every and i % lose_every == 0:
            run.lose_held_status()
        if restart_every and i % restart_every == 0:  # a new process: an empty cache and no heartbeat yet
            run = Run.make_on(run.cluster, heartbeat_s)
        if run.on_record.phase is not None and run.on_record.phase.terminal:
            break
    applied = [(change.kind, change.candidate_weight) for change, _ in run.cluster.seldon.applied]
    return run, applied


@pytest.mark.parametrize("seed", range(6))
def test_holding_readings_changes_no_decision_and_every_other_change_is_written_in_its_tick(seed: int) -> None:
    every, applied_every = _scenario(seed, 0.0)
    held, applied_held = _scenario(seed, HEARTBEAT_S)
    assert every.on_record.phase is not None and every.on_record.phase.terminal  # the scenario decides
    assert (held.on_record.phase, applied_held) == (every.on_record.phase, applied_every)
    assert [reason for _, reason, _ in held.cluster.events.posted] == [
        reason for _, reason, _ in every.cluster.events.posted]
    assert held.status_writes() < every.status_writes()
    _raises_were_earned(held)


def _raises_were_earned(run: Run) -> None:
    """Every weight raise followed a status on record whose checks all passed at the weight before."""
    previous = 0
    for change, on_record in run.cluster.seldon.applied:
        if change.kind == "weight" and change.candidate_weight > previous > 0:
            assert _earned(on_record, previous), (previous, change, on_record.analysis)
        previous = change.candidate_weight if change.kind == "weight" else 0


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("loss", ["lost", "restart"])
def test_a_lost_held_status_repeats_a_check_and_never_changes_the_outcome(seed: int, loss: str) -> None:
    every, applied_every = _scenario(seed, 0.0)
    if loss == "lost":
        lossy, applied_lossy = _scenario(seed, HEARTBEAT_S, lose_every=3)
    else:
        lossy, applied_lossy = _scenario(seed, HEARTBEAT_S, restart_every=7)
    assert (lossy.on_record.phase, applied_lossy) == (every.on_record.phase, applied_every)
    _raises_were_earned(lossy)
    _raises_were_earned(every)


def test_a_failure_after_held_passes_is_on_record_in_its_own_tick() -> None:
    run, _, _ = _steady(HEARTBEAT_S, 25)
    assert only_readings_differ(run.on_record, run.held)  # passes are being held
    run.cluster.prometheus.success_rate = 0.5
    for _ in range(30):
        run.tick()
        if run.held.analysis.consecutive_failures:
            break
    assert run.held.analysis.consecutive_failures == 1
    assert run.on_record.analysis.consecutive_failures == 1
    assert run.on_record.phase is Phase.PROGRESSING or run.on_record.phase is Phase.PAUSED


# ------------------------------------------------------------------ which changes are readings

READINGS = {"value", "message", "query", "window", "baseline", "baseline_query", "at", "window_start"}
T = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
ONE = dt.timedelta(seconds=1)


def _other(value: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, dt.datetime):
        return value + dt.timedelta(seconds=7)
    if isinstance(value, Verdict):
        return Verdict.FAIL if value is not Verdict.FAIL else Verdict.PASS
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 1.0
    raise AssertionError(f"no other value for {value!r}")


def _status_with(record: CheckRecord) -> RolloutStatus:
    healthy = Condition(ConditionType.HEALTHY, "True", "ChecksPassed", "success-rate = 0.999", T)
    progressing = Condition(ConditionType.PROGRESSING, "True", "InProgress", "at 10%", T)
    return RolloutStatus(phase=Phase.PAUSED, message="Paused at 10%", revision=1, candidate_weight=10,
                         weight_since=T, analysis=AnalysisStatus(last_run_at=T, last_checks=(record,)),
                         conditions=(healthy, progressing))


@pytest.mark.parametrize("name", [f.name for f in fields(CheckRecord)])
def test_a_check_record_field_is_a_reading_only_if_named_one(name: str) -> None:
    record = CheckRecord(metric="success-rate", verdict=Verdict.PASS, value=0.999, message="ok", query="q",
                         window="10s", min=0.99, baseline=0.998, baseline_query="b", at=T, window_start=T,
                         weight=10)
    before = _status_with(record)
    after = _status_with(replace(record, **{name: _other(getattr(record, name))}))
    assert only_readings_differ(before, after) is (name in READINGS)


@pytest.mark.parametrize("name", [f.name for f in fields(RolloutStatus) if f.name not in {"analysis", "conditions"}])
def test_any_other_change_of_the_status_is_written(name: str) -> None:
    before = _status_with(CheckRecord(metric="m", verdict=Verdict.PASS, value=1.0, message="ok"))
    value = getattr(before, name)
    changed = Phase.PROGRESSING if name == "phase" else () if isinstance(value, tuple) else _other(value)
    if name == "history":
        changed = (HistoryEntry(revision=1, version="1", model_uri="u", result="Succeeded"),)
    after = replace(before, **{name: changed})
    assert after != before and not only_readings_differ(before, after)


@pytest.mark.parametrize("verdict", [Verdict.FAIL, Verdict.INCONCLUSIVE])
def test_new_values_of_a_check_that_does_not_pass_are_written(verdict: Verdict) -> None:
    """An inconclusive look that adds to no streak (interim, or evidence still gathering) still shows its
    values at once; only a Pass repeating a Pass waits."""
    record = CheckRecord(metric="m", verdict=verdict, value=0.97, message="undecided", at=T, interim=True)
    before = _status_with(record)
    after = _status_with(replace(record, value=0.98, message="still undecided", at=T + ONE))
    assert not only_readings_differ(before, after)


def test_only_the_healthy_condition_message_and_the_last_run_are_readings() -> None:
    before = _status_with(CheckRecord(metric="m", verdict=Verdict.PASS, value=1.0, message="ok"))
    healthy, progressing = before.conditions
    assert only_readings_differ(before, replace(before, conditions=(replace(healthy, message="other"), progressing)))
    assert only_readings_differ(before, replace(before, analysis=replace(before.analysis, last_run_at=T + ONE)))
    for condition in (replace(healthy, status="False"), replace(healthy, reason="ChecksFailed")):
        assert not only_readings_differ(before, replace(before, conditions=(condition, progressing)))
    assert not only_readings_differ(before, replace(before, conditions=(healthy, replace(progressing, message="m"))))
    assert not only_readings_differ(before, replace(before, analysis=replace(before.analysis, last_checks=())))
    assert not only_readings_differ(before, before)  # nothing to hold when nothing changed


def test_readings_are_written_in_a_tick_that_posts_events_moves_traffic_or_clears_an_action() -> None:
    """The API server's status never lags what an Event, a traffic write or a handled action says."""
    run, _, _ = _steady(HEARTBEAT_S, 15)
    before = run.held
    after = replace(before, analysis=replace(before.analysis, last_run_at=run.cluster.now))
    version = str(run.cluster.store.obj["metadata"]["resourceVersion"])
    quiet = Plan(status=after)
    assert run.reconciler._held(NAMESPACE, NAME, version, before, quiet, wrote=False)
    for busy in (Plan(status=after, events=(Event("Normal", Reason.ANALYSIS_PASSED, "passed"),)),
                 Plan(status=after, clear_action=True),
                 Plan(status=after, traffic=TrafficChange(kind="weight", candidate_weight=10))):
        assert not run.reconciler._held(NAMESPACE, NAME, version, before, busy, wrote=False)
    assert not run.reconciler._held(NAMESPACE, NAME, version, before, quiet, wrote=True)
    # A clock stepped back (the last write seems to lie ahead) writes rather than holding for longer.
    run.reconciler._status_written_at[(NAMESPACE, NAME)] = run.cluster.now + dt.timedelta(minutes=10)
    assert not run.reconciler._held(NAMESPACE, NAME, version, before, quiet, wrote=False)
    assert not run.reconciler._held(NAMESPACE, NAME, str(int(version) + 1), before, quiet, wrote=False)


def test_traffic_never_follows_a_status_that_is_only_held() -> None:
    """``confirm`` (before traffic moves on a tick that wrote nothing) refuses a copy whose status is not the
    API server's; the copy read instead is the one on record, so the next tick decides from it."""
    run, _, _ = _steady(HEARTBEAT_S, 15)
    store = run.reconciler.store
    version = str(run.cluster.store.obj["metadata"]["resourceVersion"])
    assert only_readings_differ(run.on_record, run.held)
    with pytest.raises(Conflict, match="not yet written"):
        asyncio.run(store.confirm(NAMESPACE, NAME, version))
    assert run.held == run.on_record  # the held readings are gone, nothing else
    asyncio.run(store.confirm(NAMESPACE, NAME, version))  # the copy on record is confirmed


def test_a_finished_or_deleted_rollout_leaves_no_heartbeat_behind() -> None:
    run, _, _ = _steady(HEARTBEAT_S, 5)
    assert (NAMESPACE, NAME) in run.reconciler._status_written_at
    run.reconciler.forget(NAMESPACE, NAME)  # what the watch's DELETED event calls
    assert not run.reconciler._status_written_at
    run.cluster.prometheus.success_rate = 0.5
    for _ in range(15):  # a failure is written at once, and starts the heartbeat again
        run.tick()
    assert (NAMESPACE, NAME) in run.reconciler._status_written_at
    deleted, run.cluster.store.obj = run.cluster.store.obj, {}
    run.cache.apply({"type": "DELETED", "object": deleted})  # gone while the scheduler still had a tick due
    assert run.tick() is None and not run.reconciler._status_written_at
