"""Event posting: repeats within the window bump one Event's count instead of adding Events."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from kubernetes.client import V1ObjectMeta
from kubernetes.client.exceptions import ApiException
from modelrollout.telemetry import EventRecorder

OBJ = {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout",
       "metadata": {"name": "digits", "namespace": "models", "uid": "u-1", "resourceVersion": "7"}}


class FakeEvents:
    """The two CoreV1Api calls the recorder makes, kept in memory."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}

    def create_namespaced_event(self, namespace: str, body: Any, **_: Any) -> Any:
        name = f"digits.{len(self.events)}"
        self.events[name] = {"reason": body.reason, "message": body.message, "count": body.count,
                             "type": body.type, "involved": body.involved_object.uid}
        body.metadata = V1ObjectMeta(name=name, namespace=namespace)
        return body

    def patch_namespaced_event(self, name: str, namespace: str, patch: dict[str, Any], **_: Any) -> None:
        if name not in self.events:
            raise ApiException(status=404, reason="Not Found")
        self.events[name]["count"] = patch["count"]


def test_repeats_are_merged_and_distinct_events_are_not() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    api = FakeEvents()
    recorder = EventRecorder(api, clock=lambda: now)  # type: ignore[arg-type]
    for _ in range(3):
        recorder._post(OBJ, "Warning", "AnalysisFailed", "success-rate = 0.9 is below min 0.99")
    recorder._post(OBJ, "Normal", "StepStarted", "Step 2/5")
    assert sorted((e["reason"], e["count"]) for e in api.events.values()) == [("AnalysisFailed", 3), ("StepStarted", 1)]
    assert all(e["involved"] == "u-1" for e in api.events.values())


def test_a_repeat_after_the_window_or_of_a_deleted_event_creates_a_new_one() -> None:
    clock = [dt.datetime(2026, 1, 1, tzinfo=dt.UTC)]
    api = FakeEvents()
    recorder = EventRecorder(api, merge_window_s=60, clock=lambda: clock[0])  # type: ignore[arg-type]
    recorder._post(OBJ, "Normal", "Paused", "paused")
    clock[0] += dt.timedelta(seconds=61)
    recorder._post(OBJ, "Normal", "Paused", "paused")
    assert len(api.events) == 2
    api.events.clear()
    recorder._post(OBJ, "Normal", "Paused", "paused")
    assert [e["count"] for e in api.events.values()] == [1]


def test_rollouts_by_phase_follow_each_rollout_and_forget_deleted_ones() -> None:
    from modelrollout import telemetry
    from modelrollout.api import Phase

    def count(phase: Phase) -> float:
        return telemetry.REGISTRY.get_sample_value("modelrollout_rollouts", {"phase": str(phase)}) or 0.0

    before = {p: count(p) for p in Phase}
    telemetry.record_phase("t", "a", Phase.PROGRESSING)
    telemetry.record_phase("t", "b", Phase.PROGRESSING)
    telemetry.record_phase("t", "a", Phase.PROGRESSING)  # a repeat changes nothing
    assert count(Phase.PROGRESSING) - before[Phase.PROGRESSING] == 2
    telemetry.record_phase("t", "a", Phase.SUCCEEDED)
    assert count(Phase.PROGRESSING) - before[Phase.PROGRESSING] == 1
    assert count(Phase.SUCCEEDED) - before[Phase.SUCCEEDED] == 1
    telemetry.record_phase("t", "a", None)
    telemetry.record_phase("t", "b", None)
    telemetry.record_phase("t", "b", None)  # forgetting twice is harmless
    assert {p: count(p) for p in Phase} == before


def test_a_deleted_rollouts_series_all_go_so_cardinality_does_not_grow_with_churn() -> None:
    from modelrollout import telemetry
    from modelrollout.api import Phase
    from prometheus_client import generate_latest

    def series_of(name: str) -> list[str]:
        text = generate_latest(telemetry.REGISTRY).decode()
        return [line for line in text.splitlines() if f'rollout="{name}"' in line and not line.startswith("#")]

    for i in range(50):  # churn: rollouts come, are checked, and are deleted
        name = f"churn-{i}"
        telemetry.record_phase("t", name, Phase.PROGRESSING)
        telemetry.CANDIDATE_WEIGHT.labels("t", name).set(10)
        telemetry.PROVIDER_QUERIES.labels("t", name).inc()
        telemetry.PROVIDER_ERRORS.labels("t", name).inc()
        telemetry.ANALYSIS_LAST_RUN.labels("t", name).set(1.7e9)
        telemetry.record_check("t", name, "success-rate", "Pass")
        telemetry.record_check("t", name, "accuracy", "Fail")
        assert len(series_of(name)) >= 6
        telemetry.record_phase("t", name, None)
        assert series_of(name) == [], series_of(name)
    kept = "kept"
    telemetry.record_phase("t", kept, Phase.PROGRESSING)
    telemetry.record_check("t", kept, "success-rate", "Pass")
    assert series_of(kept)  # a live rollout keeps its series
    telemetry.record_phase("t", kept, None)


def test_a_finished_rollouts_series_go_after_a_while_and_its_phase_stays_counted() -> None:
    from modelrollout import telemetry
    from modelrollout.api import Phase
    from prometheus_client import generate_latest

    def series_of(name: str) -> list[str]:
        text = generate_latest(telemetry.REGISTRY).decode()
        return [line for line in text.splitlines() if f'rollout="{name}"' in line and not line.startswith("#")]

    def rolled_back() -> float:
        return telemetry.REGISTRY.get_sample_value("modelrollout_rollouts", {"phase": "RolledBack"}) or 0.0

    before = rolled_back()
    t0 = time.monotonic() + 1e6  # after anything another test recorded
    for i in range(20):  # finished, never deleted
        name = f"finished-{i}"
        telemetry.record_phase("t", name, Phase.PROGRESSING, now=t0 + i)
        telemetry.CANDIDATE_WEIGHT.labels("t", name).set(0)
        telemetry.record_check("t", name, "accuracy", "Fail")
        telemetry.record_phase("t", name, Phase.ROLLED_BACK, now=t0 + i)
    telemetry.record_phase("t", "in-flight", Phase.PROGRESSING, now=t0 + 100)
    telemetry.record_check("t", "in-flight", "accuracy", "Pass")
    assert series_of("finished-0")  # scraped for a while: the last failing check is seen
    telemetry.record_phase("t", "in-flight", Phase.PROGRESSING, now=t0 + telemetry.FINISHED_SERIES_KEPT_S + 10.5)
    assert [series_of(f"finished-{i}") for i in range(11)] == [[]] * 11
    assert series_of("finished-11") and series_of("in-flight")
    assert rolled_back() - before == 20  # still rollouts, still counted by phase
    for i in range(20):
        telemetry.record_phase("t", f"finished-{i}", None)
    telemetry.record_phase("t", "in-flight", None)
    assert rolled_back() == before


def test_counters_expose_no_created_series_beside_them() -> None:
    """A `_created` line per counter doubled every rollout's series in Prometheus, for nothing."""
    from modelrollout import telemetry
    from prometheus_client import generate_latest

    telemetry.record_check("t", "created-lines", "success-rate", "Pass")
    lines = [line for line in generate_latest(telemetry.REGISTRY).decode().splitlines()
             if 'rollout="created-lines"' in line]
    assert any(line.startswith("modelrollout_analysis_checks_total{") for line in lines), lines
    assert not [line for line in lines if "_created" in line], lines
    telemetry.record_phase("t", "created-lines", None)
