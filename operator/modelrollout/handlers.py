"""Kopf handlers: thin glue between the Kubernetes API and the pure rollout engine.

One daemon per ModelRollout ticks: read the object, observe the target, run the metrics that are due,
ask ``engine.decide`` for a Plan, then apply its traffic change, write its status and post its Events.
The handlers hold no rollout state of their own: all of it lives in the object's status, so a restarted
operator continues exactly where the last one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from . import telemetry
from .analysis import (
    AnalysisContext,
    MetricProvider,
    PrometheusProvider,
    TemplateSource,
    provider_error,
    run_checks,
)
from .api import GROUP, PLURAL, TEMPLATE_PLURAL, VERSION, RolloutSpec, SpecError
from .backends import TrafficBackend
from .backends.seldon_v1 import SeldonV1Backend
from .engine import Observations, Plan, TargetObservation, decide, metrics_due
from .scheduler import TickScheduler
from .status import RolloutStatus

ACTION_ANNOTATION = f"{GROUP}/action"
log = logging.getLogger(__name__)
ERROR_BACKOFF_S = 5.0


@dataclass
class OperatorConfig:
    prometheus_url: str = "http://127.0.0.1:9090"
    metrics_port: int = 8000
    concurrency: int = 16  # rollouts ticking at the same time


CONFIG = OperatorConfig()


@dataclass
class Runtime:
    """Connections shared by every rollout's daemon (made once at start-up)."""

    api: k8s.CustomObjectsApi
    backends: dict[str, TrafficBackend]
    scheduler: TickScheduler
    events: telemetry.EventRecorder
    templates: TemplateSource
    providers: dict[str, MetricProvider] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    seen: dict[tuple[str, str], tuple[Any, Any]] = field(default_factory=dict)  # generation, action per rollout
    loop_task: asyncio.Task[None] | None = None

    def provider(self, address: str) -> MetricProvider:
        if address not in self.providers:
            self.providers[address] = PrometheusProvider(address)
        return self.providers[address]


def get_object(api: k8s.CustomObjectsApi, namespace: str, plural: str, name: str) -> dict[str, Any]:
    """One of our objects as a plain dict (the client's typing says only "object")."""
    return cast(dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))


class KubernetesTemplates:
    """AnalysisTemplates read from the API server when a metric references one."""

    def __init__(self, api: k8s.CustomObjectsApi) -> None:
        self._api = api

    async def get(self, namespace: str, name: str) -> str | None:
        try:
            obj = await asyncio.to_thread(get_object, self._api, namespace, TEMPLATE_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return str(obj.get("spec", {}).get("query") or "") or None


_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator has not started")
    return _runtime


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    global _runtime
    # Kopf's own bookkeeping goes to annotations under our prefix, never into our status schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.watching.server_timeout = 120
    settings.networking.request_timeout = 30
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    api_client = k8s.ApiClient()
    _runtime = Runtime(api=k8s.CustomObjectsApi(api_client),
                       backends={"SeldonDeployment": SeldonV1Backend(api_client)},
                       events=telemetry.EventRecorder(k8s.CoreV1Api(api_client)),
                       templates=KubernetesTemplates(k8s.CustomObjectsApi(api_client)),
                       scheduler=TickScheduler(tick, concurrency=CONFIG.concurrency, error_backoff_s=ERROR_BACKOFF_S))
    _runtime.loop_task = asyncio.create_task(_runtime.scheduler.run(_runtime.stop))
    telemetry.start(CONFIG.metrics_port)
    logger.info("modelrollout operator started; default Prometheus %s", CONFIG.prometheus_url)


@kopf.on.event(GROUP, VERSION, PLURAL)
def watch(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    """A new rollout (or one listed after a restart), a spec change or an action request: tick now.

    Our own status writes also arrive here; they change neither generation nor the action annotation,
    so they do not cause an extra tick.
    """
    if namespace is None:
        return
    rt = runtime()
    key = (namespace, name)
    if event.get("type") == "DELETED":
        rt.seen.pop(key, None)
        rt.scheduler.forget(namespace, name)
        telemetry.record_phase(namespace, name, None)
        return
    seen = (body.metadata.get("generation"), body.metadata.annotations.get(ACTION_ANNOTATION))
    if rt.seen.get(key) != seen:
        rt.seen[key] = seen
        rt.scheduler.notify(namespace, name)


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    rt = runtime()
    rt.stop.set()
    if rt.loop_task is not None:
        await rt.loop_task


async def tick(namespace: str, name: str) -> float | None:
    """One reconcile step; returns seconds until the next, or None when the rollout no longer exists."""
    rt = runtime()
    started = time.monotonic()
    try:
        return await _tick(rt, namespace, name)
    except ApiException as exc:
        telemetry.TICK_ERRORS.labels(f"api-{exc.status}").inc()
        log.warning("tick of %s/%s: API server answered %s %s", namespace, name, exc.status, exc.reason)
        return 0.0 if exc.status == 409 else ERROR_BACKOFF_S  # 409: re-read at once
    except Exception:
        telemetry.TICK_ERRORS.labels("exception").inc()
        raise
    finally:
        telemetry.TICK_SECONDS.observe(time.monotonic() - started)


async def _tick(rt: Runtime, namespace: str, name: str) -> float | None:
    try:
        obj = await asyncio.to_thread(get_object, rt.api, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            telemetry.record_phase(namespace, name, None)
            return None
        raise
    metadata = obj.get("metadata", {})
    generation = int(metadata.get("generation") or 0)
    status = RolloutStatus.from_dict(obj.get("status"))
    action = (metadata.get("annotations") or {}).get(ACTION_ANNOTATION)
    now = dt.datetime.now(dt.UTC)
    spec: RolloutSpec | SpecError
    try:
        spec = RolloutSpec.parse(obj.get("spec") or {})
    except SpecError as exc:
        spec = exc

    backend: TrafficBackend | None = None
    if isinstance(spec, SpecError):
        observations = Observations(target=TargetObservation(exists=False), action=action)
    else:
        backend = rt.backends[spec.target.kind]
        target = await backend.observe(namespace, spec)
        checks = None
        problem = ""
        due = metrics_due(spec, status, now) if target.stable_present and target.serving else ()
        if due:
            provider = rt.provider(spec.analysis.prometheus_address or CONFIG.prometheus_url)
            checks = await run_checks(due, AnalysisContext.from_spec(spec, namespace), provider, rt.templates,
                                      min_requests=spec.analysis.min_requests)
            problem = provider_error(checks)
            _count_checks(namespace, name, checks, problem)
        observations = Observations(target=target, checks=checks, action=action, provider_error=problem)

    plan = decide(spec, generation, status, observations, now)

    if plan.traffic is not None and backend is not None and not isinstance(spec, SpecError):
        try:
            if await backend.apply(namespace, spec, plan.traffic):
                telemetry.TRAFFIC_CHANGES.labels(plan.traffic.kind).inc()
        except (LookupError, RuntimeError, ApiException) as exc:
            # Nothing else of this plan is written: the next tick replays the same decision.
            await rt.events.post(obj, "Warning", "TrafficUpdateFailed",
                                 f"Could not apply {plan.traffic.kind} to {spec.target.kind}/{spec.target.name}: "
                                 f"{_reason(exc)}")
            return ERROR_BACKOFF_S

    await _write(rt, namespace, name, obj, status, plan, action)
    telemetry.record_phase(namespace, name, plan.status.phase)
    telemetry.CANDIDATE_WEIGHT.labels(namespace, name).set(plan.status.candidate_weight)
    return plan.requeue_after


async def _write(rt: Runtime, namespace: str, name: str, obj: dict[str, Any], before: RolloutStatus,
                 plan: Plan, action: str | None) -> None:
    if plan.status != before:
        # resourceVersion makes the write conditional: a concurrent change answers 409 and we re-read.
        body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": plan.status.to_dict()}
        await asyncio.to_thread(rt.api.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL,
                                name, body, _content_type="application/merge-patch+json")
    for event in plan.events:
        await rt.events.post(obj, event.type, event.reason, event.message)
    if plan.clear_action and action is not None:
        key = ACTION_ANNOTATION.replace("/", "~1")
        # Remove the annotation only if it still holds the action we handled, not a newer request.
        patch = [{"op": "test", "path": f"/metadata/annotations/{key}", "value": action},
                 {"op": "remove", "path": f"/metadata/annotations/{key}"}]
        with contextlib.suppress(ApiException):  # 422: it changed meanwhile; the next tick handles it
            await asyncio.to_thread(rt.api.patch_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name,
                                    patch, _content_type="application/json-patch+json")


def _count_checks(namespace: str, name: str, checks: tuple[Any, ...], problem: str) -> None:
    telemetry.PROVIDER_QUERIES.labels(namespace, name).inc()
    if problem:
        telemetry.PROVIDER_ERRORS.labels(namespace, name).inc()
    for check in checks:
        telemetry.CHECKS.labels(namespace, name, check.metric, str(check.verdict)).inc()


def _reason(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"API server answered {exc.status} {exc.reason}"
    return str(exc)
