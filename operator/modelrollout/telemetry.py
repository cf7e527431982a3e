"""The operator's own Prometheus metrics: what it decided, how long a tick took, what went wrong."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
from collections.abc import Mapping
from typing import Any

from kubernetes.client import CoreV1Api, CoreV1Event, V1EventSource, V1ObjectMeta, V1ObjectReference
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .api import Phase

log = logging.getLogger(__name__)
REGISTRY = CollectorRegistry()

ROLLOUTS = Gauge("modelrollout_rollouts", "ModelRollouts by phase", ["phase"], registry=REGISTRY)
CANDIDATE_WEIGHT = Gauge("modelrollout_candidate_weight_percent", "Live traffic share of the candidate",
                         ["namespace", "rollout"], registry=REGISTRY)
CHECKS = Counter("modelrollout_analysis_checks_total", "Analysis checks by metric and verdict",
                 ["namespace", "rollout", "metric", "verdict"], registry=REGISTRY)
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


def start(port: int) -> None:
    if port:
        start_http_server(port, registry=REGISTRY)


def record_phase(namespace: str, name: str, phase: Phase | None) -> None:
    """Count rollouts by phase; None forgets a deleted rollout."""
    if phase is None:
        _phases.pop((namespace, name), None)
        with contextlib.suppress(KeyError):
            CANDIDATE_WEIGHT.remove(namespace, name)
    else:
        _phases[(namespace, name)] = str(phase)
    for value in Phase:
        ROLLOUTS.labels(str(value)).set(sum(1 for p in _phases.values() if p == value))


class EventRecorder:
    """Posts Kubernetes Events about our objects (``kubectl describe`` shows them).

    Posted directly through the core API rather than kopf.event, so ticks that run outside Kopf's own
    handler context (the scheduler's tasks) can post too.
    """

    def __init__(self, api: CoreV1Api, component: str = "modelrollout-operator") -> None:
        self._api = api
        self._component = component

    def _post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata", {})
        now = dt.datetime.now(dt.UTC)
        body = CoreV1Event(
            metadata=V1ObjectMeta(generate_name=f"{meta.get('name', 'object')}.", namespace=meta.get("namespace")),
            involved_object=V1ObjectReference(api_version=obj.get("apiVersion"), kind=obj.get("kind"),
                                              name=meta.get("name"), namespace=meta.get("namespace"),
                                              uid=meta.get("uid"), resource_version=meta.get("resourceVersion")),
            type=type_, reason=reason, message=message[:1024], count=1, first_timestamp=now, last_timestamp=now,
            event_time=now, action=reason, reporting_component=self._component,
            reporting_instance=socket.gethostname()[:128], source=V1EventSource(component=self._component))
        try:
            self._api.create_namespaced_event(meta.get("namespace"), body)
        except ApiException as exc:  # an event lost is not worth a failed tick
            log.warning("could not post event %s on %s: %s %s", reason, meta.get("name"), exc.status, exc.reason)

    async def post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        await asyncio.to_thread(self._post, obj, type_, reason, message)
