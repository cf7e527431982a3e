"""The operator's own Prometheus metrics: what it decided, how long a tick took, what went wrong."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client import CoreV1Api, CoreV1Event, V1EventSource, V1ObjectMeta, V1ObjectReference
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, start_http_server

from .api import Phase

log = logging.getLogger(__name__)
# No `_created` series beside every counter and histogram: they doubled the per-rollout series (Prometheus
# stores each as a series of its own) and nothing reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()

ROLLOUTS = Gauge("modelrollout_rollouts", "ModelRollouts by phase", ["phase"], registry=REGISTRY)
CANDIDATE_WEIGHT = Gauge("modelrollout_candidate_weight_percent", "Live traffic share of the candidate",
                         ["namespace", "rollout"], registry=REGISTRY)
CANDIDATE_MIRROR = Gauge("modelrollout_candidate_mirror_percent",
                         "Share of live requests copied to a shadow candidate (its answers reach nobody)",
                         ["namespace", "rollout"], registry=REGISTRY)
CHECKS = Counter("modelrollout_analysis_checks_total", "Analysis checks by metric and verdict",
                 ["namespace", "rollout", "metric", "verdict"], registry=REGISTRY)
ANALYSIS_LAST_RUN = Gauge("modelrollout_analysis_last_run_timestamp_seconds",
                          "When the rollout's latest analysis ran, in Unix seconds (a stalled analysis shows "
                          "as time() minus this growing past the interval)", ["namespace", "rollout"],
                          registry=REGISTRY)
TICK_SECONDS = Histogram("modelrollout_tick_duration_seconds", "Time of one reconcile tick of one rollout",
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=REGISTRY)
PROVIDER_ERRORS = Counter("modelrollout_provider_errors_total", "Analysis ticks with a metric-provider error",
                          ["namespace", "rollout"], registry=REGISTRY)
PROVIDER_QUERIES = Counter("modelrollout_provider_queries_total", "Analysis runs (each one or more queries)",
                           ["namespace", "rollout"], registry=REGISTRY)
TRAFFIC_CHANGES = Counter("modelrollout_traffic_changes_total", "Writes to a target's traffic", ["kind"],
                          registry=REGISTRY)
TICK_ERRORS = Counter("modelrollout_tick_errors_total", "Ticks that failed and were retried", ["reason"],
                      registry=REGISTRY)

_phases: dict[tuple[str, str], str] = {}
# Finished rollouts by when they finished: their per-rollout series go FINISHED_SERIES_KEPT_S later (long
# enough for every scrape to see the last check), their phase stays counted until they are deleted.
_finished: OrderedDict[tuple[str, str], float] = OrderedDict()
FINISHED_SERIES_KEPT_S = 600.0
# The (metric, verdict) label pairs each rollout's check counter has, so a deleted rollout's series can
# all be removed: per-rollout series must not outlive their rollout, or cardinality grows with churn.
_checks: dict[tuple[str, str], set[tuple[str, str]]] = {}


def start(port: int) -> None:
    if port:
        start_http_server(port, registry=REGISTRY)


def record_check(namespace: str, name: str, metric: str, verdict: str) -> None:
    CHECKS.labels(namespace, name, metric, verdict).inc()
    _checks.setdefault((namespace, name), set()).add((metric, verdict))


def record_phase(namespace: str, name: str, phase: Phase | None, now: float | None = None) -> None:
    """Count rollouts by phase; None forgets a deleted rollout and removes every series labelled with it.
    A finished rollout's own series are removed FINISHED_SERIES_KEPT_S after it finished, so cardinality
    follows the rollouts in flight, not every rollout ever run. Only the gauges that changed are touched."""
    key = (namespace, name)
    now = time.monotonic() if now is None else now
    before = _phases.pop(key, None)
    if phase is None:
        _forget_series(namespace, name)
        _finished.pop(key, None)
    else:
        _phases[key] = str(phase)
        if not phase.terminal:
            _finished.pop(key, None)
        elif key not in _finished:
            _finished[key] = now
    _expire_finished(now)
    after = _phases.get(key)
    if before != after:
        if before is not None:
            ROLLOUTS.labels(before).dec()
        if after is not None:
            ROLLOUTS.labels(after).inc()


def _expire_finished(now: float) -> None:
    while _finished:
        key, finished_at = next(iter(_finished.items()))
        if now - finished_at < FINISHED_SERIES_KEPT_S:
            return
        del _finished[key]
        _forget_series(*key)


def _forget_series(namespace: str, name: str) -> None:
    for metric, verdict in _checks.pop((namespace, name), set()):
        with contextlib.suppress(KeyError):
            CHECKS.remove(namespace, name, metric, verdict)
    for per_rollout in (CANDIDATE_WEIGHT, CANDIDATE_MIRROR, ANALYSIS_LAST_RUN, PROVIDER_ERRORS, PROVIDER_QUERIES):
        with contextlib.suppress(KeyError):
            per_rollout.remove(namespace, name)


class EventRecorder:
    """Posts Kubernetes Events about our objects (``kubectl describe`` shows them).

    Posted directly through the core API rather than kopf.event, so ticks that run outside Kopf's own
    handler context (the scheduler's tasks) can post too. A repeat of the same event about the same
    object within ``merge_window_s`` bumps the existing Event's count instead of adding another, as
    client-go's event correlator does, so a long or flapping rollout does not pile Events up.
    """

    def __init__(self, api: CoreV1Api, component: str = "modelrollout-operator", merge_window_s: float = 600.0,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 request_timeout_s: float = 10.0) -> None:
        self._api = api
        self._timeout = request_timeout_s
        self._component = component
        self._merge_window = dt.timedelta(seconds=merge_window_s)
        self._clock = clock
        self._recent: OrderedDict[tuple[str, ...], tuple[str, int, dt.datetime]] = OrderedDict()

    def _post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace")
        now = self._clock()
        message = message[:1024]
        key = (str(meta.get("uid")), type_, reason, message)
        try:
            seen = self._recent.get(key)
            if seen is not None and now - seen[2] < self._merge_window:
                name, count, first = seen
                try:
                    self._api.patch_namespaced_event(name, namespace, {"count": count + 1, "lastTimestamp": now},
                                                     _request_timeout=self._timeout)
                    self._remember(key, (name, count + 1, first))
                    return
                except ApiException as exc:
                    if exc.status != 404:  # expired or deleted: create a new one below
                        raise
            created = self._api.create_namespaced_event(namespace, self._event(obj, type_, reason, message, now),
                                                        _request_timeout=self._timeout)
            self._remember(key, (str(created.metadata.name), 1, now))
        except ApiException as exc:  # an event lost is not worth a failed tick
            log.warning("could not post event %s on %s: %s %s", reason, meta.get("name"), exc.status, exc.reason)
        except Exception as exc:  # timeouts and connection errors too
            log.warning("could not post event %s on %s: %s", reason, meta.get("name"), type(exc).__name__)

    def _remember(self, key: tuple[str, ...], value: tuple[str, int, dt.datetime]) -> None:
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > 4096:
            self._recent.popitem(last=False)

    def _event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str, now: dt.datetime) -> CoreV1Event:
        meta = obj.get("metadata", {})
        return CoreV1Event(
            metadata=V1ObjectMeta(generate_name=f"{meta.get('name', 'object')}.", namespace=meta.get("namespace")),
            involved_object=V1ObjectReference(api_version=obj.get("apiVersion"), kind=obj.get("kind"),
                                              name=meta.get("name"), namespace=meta.get("namespace"),
                                              uid=meta.get("uid"), resource_version=meta.get("resourceVersion")),
            type=type_, reason=reason, message=message, count=1, first_timestamp=now, last_timestamp=now,
            event_time=now, action=reason, reporting_component=self._component,
            reporting_instance=socket.gethostname()[:128], source=V1EventSource(component=self._component))

    async def post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        await asyncio.to_thread(self._post, obj, type_, reason, message)
