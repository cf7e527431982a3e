"""Kopf wiring: start-up, the watch that wakes rollouts, liveness, and the Kubernetes side of the store.

The tick itself is ``reconcile.Reconciler``; this module only connects it to the cluster. Everything the
handlers share comes through Kopf's ``memo``: ``memo.config`` (an ``OperatorConfig``, from the command
line) and ``memo.runtime`` (made at start-up); there are no module globals. Watch events arrive on the
event loop (async handlers), so the scheduler is only ever touched from the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from . import telemetry
from .analysis import MetricProvider, PrometheusProvider, TemplateSource
from .analysis.sources import template_from_spec
from .api import (
    DEFAULT_PROMETHEUS_URL,
    GROUP,
    PLURAL,
    SELDON_GROUP,
    SELDON_PLURAL,
    SELDON_VERSION,
    TEMPLATE_PLURAL,
    VERSION,
    Limits,
)
from .backends.factory import make_backends
from .cache import ObjectCache, TargetIndex, targets_of
from .engine import Plan
from .leadership import (
    FencedEvents,
    KubernetesLeaseStore,
    LeaderElector,
    LeaseTiming,
    NotLeader,
)
from .reconcile import ACTION_ANNOTATION, ERROR_BACKOFF_S, Conflict, Reconciler, TickStats
from .scheduler import TickScheduler
from .store import CachedStore
from .templates import MetricTemplate

log = logging.getLogger(__name__)


@dataclass
class OperatorConfig:
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    metrics_port: int = 8000
    concurrency: int = 16  # rollouts ticking at the same time
    scrape_interval_s: float = 30.0  # the scrape interval of the Prometheus the metrics come from
    allowed_prometheus_urls: tuple[str, ...] = ()  # besides prometheus_url, what a spec may name
    provider_workers: int = 8  # threads for metric-provider I/O (apart from Kubernetes I/O)
    kube_workers: int = 16  # threads for Kubernetes I/O
    kube_request_timeout_s: float = 10.0  # every Kubernetes API call
    status_heartbeat_s: float = 60.0  # readings alone (a pass after a pass) are written at most this often
    namespace_label: str = "namespace"  # the label the scrape puts the namespace in
    leader_election: LeaderElection | None = None  # None: this replica is the only one and always ticks

    def limits(self) -> Limits:
        return Limits(scrape_interval_s=self.scrape_interval_s, default_prometheus=self.prometheus_url,
                      allowed_prometheus=frozenset(self.allowed_prometheus_urls), namespace_label=self.namespace_label)


@dataclass(frozen=True)
class LeaderElection:
    namespace: str
    name: str
    identity: str
    timing: LeaseTiming = field(default_factory=LeaseTiming)


class KubernetesStore:
    """ModelRollouts through the API server; every call has a request timeout."""

    def __init__(self, api: k8s.CustomObjectsApi, timeout_s: float, field_manager: str | None = None,
                 fence: Callable[[], float] | None = None) -> None:
        self._api = api
        self._timeout = timeout_s
        self._manager = {"field_manager": field_manager} if field_manager else {}  # who wrote, in managedFields
        self._fence = fence  # leader election: seconds a write may still take; raises NotLeader when none

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        timeout = self._timeout
        if method.startswith("patch_"):
            kwargs.update(self._manager)
            if self._fence is not None:  # in the worker thread, just before the request is sent
                timeout = min(timeout, self._fence())
        try:
            return getattr(self._api, method)(*args, _request_timeout=timeout, **kwargs)
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from exc
            raise

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await asyncio.to_thread(self._call, "get_namespaced_custom_object", GROUP, VERSION, namespace,
                                          PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], obj)

    def hold_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> bool:
        return False  # no copy to hold it in: CachedStore holds

    async def write_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> str:
        # resourceVersion makes the write conditional: a concurrent change answers 409 and we re-read.
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        obj = await asyncio.to_thread(self._call, "patch_namespaced_custom_object_status", GROUP, VERSION, namespace,
                                      PLURAL, name, body, _content_type="application/merge-patch+json")
        return str(obj["metadata"]["resourceVersion"])

    async def set_finalizers(self, namespace: str, name: str, resource_version: str, finalizers: list[str]) -> str:
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}}
        obj = await asyncio.to_thread(self._call, "patch_namespaced_custom_object", GROUP, VERSION, namespace,
                                      PLURAL, name, body, _content_type="application/merge-patch+json")
        return str(obj["metadata"]["resourceVersion"])

    async def confirm(self, namespace: str, name: str, resource_version: str) -> None:
        current = await self.get(namespace, name)
        if current is None or str(current["metadata"].get("resourceVersion")) != resource_version:
            raise Conflict(f"{namespace}/{name} changed since it was read")

    async def clear_action(self, namespace: str, name: str, action: str) -> None:
        key = ACTION_ANNOTATION.replace("/", "~1")
        # Remove the annotation only if it still holds the action we handled, not a newer request.
        patch = [{"op": "test", "path": f"/metadata/annotations/{key}", "value": action},
                 {"op": "remove", "path": f"/metadata/annotations/{key}"}]
        with contextlib.suppress(ApiException):  # 422: it changed meanwhile; the next tick handles it
            await asyncio.to_thread(self._call, "patch_namespaced_custom_object", GROUP, VERSION, namespace, PLURAL,
                                    name, patch, _content_type="application/json-patch+json")


class UnusedDiffBase(kopf.AnnotationsDiffBaseStorage):
    """Kopf builds every object's "essence" (a deep copy of all of it, status included) on every watch
    event, for create and update handlers to diff. This operator has none (it reacts to raw events, and a
    unit test keeps it so), so the essence is never read: build an empty one. At a thousand rollouts that
    copy cost more operator time than the ticks."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None


class KubernetesTemplates:
    """AnalysisTemplates as the watch delivered them; one the watch has not delivered is read from the
    API server (it may have just been created)."""

    def __init__(self, api: k8s.CustomObjectsApi, timeout_s: float, watched: ObjectCache | None = None) -> None:
        self._api = api
        self._timeout = timeout_s
        self._watched = watched

    async def get(self, namespace: str, name: str) -> MetricTemplate | None:
        cached = self._watched.get(namespace, name) if self._watched is not None else None
        if cached is not None:
            return template_from_spec(cached.get("spec") or {})
        try:
            obj = await asyncio.to_thread(self._api.get_namespaced_custom_object, GROUP, VERSION, namespace,
                                          TEMPLATE_PLURAL, name, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return template_from_spec(cast(dict[str, Any], obj).get("spec") or {})


@dataclass
class Runtime:
    """What every rollout's tick shares (made once at start-up)."""

    reconciler: Reconciler
    scheduler: TickScheduler
    rollouts: ObjectCache = field(default_factory=ObjectCache)  # as the watch delivered them
    deployments: ObjectCache = field(default_factory=ObjectCache)  # the SeldonDeployments, likewise
    templates: ObjectCache = field(default_factory=ObjectCache)  # the AnalysisTemplates, likewise
    dependents: TargetIndex = field(default_factory=TargetIndex)  # which rollouts act on which deployment
    providers: dict[str, MetricProvider] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    seen: dict[tuple[str, str], tuple[Any, ...]] = field(default_factory=dict)
    loop_task: asyncio.Task[None] | None = None
    elector_task: asyncio.Task[None] | None = None
    elector_stop: asyncio.Event = field(default_factory=asyncio.Event)  # set once the ticks have drained


def runtime(memo: kopf.Memo) -> Runtime:
    found = getattr(memo, "runtime", None)
    if not isinstance(found, Runtime):
        raise RuntimeError("the operator has not started")
    return found


def config(memo: kopf.Memo) -> OperatorConfig:
    found = getattr(memo, "config", None)
    return found if isinstance(found, OperatorConfig) else OperatorConfig()


def _provider_factory(providers: dict[str, MetricProvider], pool: concurrent.futures.ThreadPoolExecutor,
                      ) -> Callable[[str], MetricProvider]:
    def provider_for(address: str) -> MetricProvider:
        if address not in providers:
            providers[address] = PrometheusProvider(address, executor=pool)
        return providers[address]
    return provider_for


def _record(namespace: str, name: str, plan: Plan, stats: TickStats) -> None:
    telemetry.record_phase(namespace, name, plan.status.phase)
    telemetry.CANDIDATE_WEIGHT.labels(namespace, name).set(plan.status.candidate_weight)
    telemetry.CANDIDATE_MIRROR.labels(namespace, name).set(plan.status.candidate_mirror)
    if stats.traffic_kind:
        telemetry.TRAFFIC_CHANGES.labels(stats.traffic_kind).inc()
    if stats.checks:
        last_run = plan.status.analysis.last_run_at
        if last_run is not None:
            telemetry.ANALYSIS_LAST_RUN.labels(namespace, name).set(last_run.timestamp())
        telemetry.PROVIDER_QUERIES.labels(namespace, name).inc()
        if stats.provider_error:
            telemetry.PROVIDER_ERRORS.labels(namespace, name).inc()
        for check in stats.checks:
            telemetry.record_check(namespace, name, check.metric, str(check.verdict))


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, logger: kopf.Logger, memo: kopf.Memo, **_: Any) -> None:
    cfg = config(memo)
    # Kopf's own bookkeeping goes to annotations under our prefix, never into our status schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = UnusedDiffBase(prefix=GROUP, key="last-handled-configuration")
    settings.watching.server_timeout = 120
    settings.networking.request_timeout = 30
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    # Kubernetes I/O runs on the loop's default pool, metric providers on their own: a hanging
    # Prometheus can fill only its own threads.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(cfg.kube_workers, thread_name_prefix="kube"))
    provider_pool = concurrent.futures.ThreadPoolExecutor(cfg.provider_workers, thread_name_prefix="provider")
    # One pooled connection per Kubernetes thread: a smaller pool (the client's default is 10) discards
    # connections under load and opens new TLS ones.
    configuration = k8s.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = max(cfg.kube_workers, configuration.connection_pool_maxsize or 0)
    api_client = k8s.ApiClient(configuration)
    timeout = cfg.kube_request_timeout_s
    providers: dict[str, MetricProvider] = {}
    election = cfg.leader_election
    elector: LeaderElector | None = None
    if election is not None:
        # Only the Lease's holder ticks, and every write it sends is fenced by its claim on the Lease.
        elector = LeaderElector(KubernetesLeaseStore(k8s.CoordinationV1Api(api_client), election.namespace,
                                                     election.name, timeout),
                                election.identity, election.timing, on_change=lambda _: scheduler.wake())
    fence = elector.write_budget if elector is not None else None
    manager = election.identity if election is not None else None
    rollouts = ObjectCache()
    store = CachedStore(KubernetesStore(k8s.CustomObjectsApi(api_client), timeout, field_manager=manager,
                                        fence=fence), rollouts)
    deployments = ObjectCache()
    templates = ObjectCache()
    backends = make_backends(api_client, timeout, field_manager=manager, fence=fence,
                             watched={"SeldonDeployment": deployments.get},
                             forget={"SeldonDeployment": deployments.drop})
    events: Any = telemetry.EventRecorder(k8s.CoreV1Api(api_client), request_timeout_s=timeout)
    if elector is not None:
        events = FencedEvents(events, elector.write_budget)
    reconciler = Reconciler(
        store=store,
        backends=backends,
        events=events,
        templates=cast(TemplateSource, KubernetesTemplates(k8s.CustomObjectsApi(api_client), timeout, templates)),
        provider_for=_provider_factory(providers, provider_pool),
        limits=cfg.limits(),
        on_plan=_record,
        status_heartbeat_s=cfg.status_heartbeat_s,
    )

    async def tick_this(namespace: str, name: str) -> float | None:
        return await tick(rt, namespace, name)

    scheduler = TickScheduler(tick_this, concurrency=cfg.concurrency, error_backoff_s=ERROR_BACKOFF_S,
                              active=elector.may_write if elector is not None else lambda: True)
    rt = Runtime(reconciler=reconciler, providers=providers, scheduler=scheduler, rollouts=rollouts,
                 deployments=deployments, templates=templates)
    rt.loop_task = asyncio.create_task(rt.scheduler.run(rt.stop))
    if elector is not None:
        rt.elector_task = asyncio.create_task(elector.run(rt.elector_stop))
    memo.runtime = rt
    telemetry.start(cfg.metrics_port)
    logger.info("modelrollout operator started; default Prometheus %s", cfg.prometheus_url)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def watch(event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo,
                **_: Any) -> None:
    """A new rollout (or one listed after a restart), a spec change, an action request or a deletion:
    tick now. Our own status writes also arrive here; they change none of those, so they cause no tick.
    Every version goes into the cache the ticks read from (no GET per tick)."""
    if namespace is None:
        return
    rt = runtime(memo)
    key = (namespace, name)
    rt.rollouts.apply(event)
    if event.get("type") == "DELETED":
        rt.dependents.forget(namespace, name)
        rt.seen.pop(key, None)
        rt.scheduler.forget(namespace, name)
        rt.reconciler.forget(namespace, name)
        telemetry.record_phase(namespace, name, None)
        return
    raw = event.get("object")
    if isinstance(raw, dict):
        rt.dependents.track(namespace, name, targets_of(raw, "SeldonDeployment"))
    seen = (body.metadata.get("generation"), body.metadata.annotations.get(ACTION_ANNOTATION),
            body.metadata.get("deletionTimestamp"))
    if rt.seen.get(key) != seen:
        rt.seen[key] = seen
        rt.scheduler.notify(namespace, name)


@kopf.on.event(SELDON_GROUP, SELDON_VERSION, SELDON_PLURAL)
async def watch_deployment(event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo,
                           **_: Any) -> None:
    """A SeldonDeployment changed (a traffic write landed, its servers became ready, someone edited it):
    the copy goes into the cache observations read, and every rollout acting on it ticks now. So a rollout
    waiting for its target needs no polling, and a finished one notices its candidate coming back."""
    if namespace is None:
        return
    rt = runtime(memo)
    rt.deployments.apply(event)
    for rollout in rt.dependents.rollouts_of(namespace, name):
        rt.scheduler.notify(namespace, rollout)


@kopf.on.event(GROUP, VERSION, TEMPLATE_PLURAL)
async def watch_template(event: kopf.RawEvent, namespace: str | None, name: str, memo: kopf.Memo,
                         **_: Any) -> None:
    """AnalysisTemplates into the cache the analyses read (no GET per analysis); a change is read by the
    next check of every rollout that references it."""
    if namespace is None:
        return
    runtime(memo).templates.apply(event)


@kopf.on.probe(id="tickLoop")
def tick_loop_alive(memo: kopf.Memo, **_: Any) -> str:
    """Liveness: fails (and the pod is restarted) if the scheduler's loop has stopped."""
    task = runtime(memo).loop_task
    if task is None or task.done():
        raise RuntimeError("the rollout scheduler loop is not running")
    return "running"


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    rt = runtime(memo)
    rt.stop.set()
    if rt.loop_task is not None:
        await rt.loop_task
    rt.elector_stop.set()  # only now: a tick still writing must keep its claim until it is done
    if rt.elector_task is not None:
        await rt.elector_task  # hands the Lease back, so that a standby takes over at once


async def tick(rt: Runtime, namespace: str, name: str) -> float | None:
    """One reconcile step; returns seconds until the next, or None: no tick until the watch notifies
    (the rollout finished, or no longer exists)."""
    started = time.monotonic()
    try:
        delay = await rt.reconciler.tick(namespace, name)
        if delay is None and rt.rollouts.get(namespace, name) is None:  # gone (not merely finished)
            telemetry.record_phase(namespace, name, None)
        return delay
    except Conflict:
        telemetry.TICK_ERRORS.labels("api-409").inc()
        return 0.0  # re-read at once
    except NotLeader:
        telemetry.TICK_ERRORS.labels("not-leader").inc()
        return ERROR_BACKOFF_S  # the new leader ticks it; this replica starts nothing while it does not lead
    except ApiException as exc:
        telemetry.TICK_ERRORS.labels(f"api-{exc.status}").inc()
        log.warning("tick of %s/%s: API server answered %s %s", namespace, name, exc.status, exc.reason)
        return ERROR_BACKOFF_S
    except Exception:
        telemetry.TICK_ERRORS.labels("exception").inc()
        raise
    finally:
        telemetry.TICK_SECONDS.observe(time.monotonic() - started)
