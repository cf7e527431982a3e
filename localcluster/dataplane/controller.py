"""Watches SeldonDeployments and keeps the local data plane in line with them, as Seldon's controller would.

Following Seldon Core v1.18's reconcile (operator/controllers/seldondeployment_controller.go):

- It acts on a write some time after it (``reconcile_delay_s``, default 1 s; per deployment the annotation
  ``localcluster.modelrollout.dev/reconcile-delay-seconds``): servers, routes and ``status.state`` follow
  a new spec only then. Status has no observedGeneration, so a read right after a write may describe the
  previous spec. Changes that leave the spec alone (status, metadata) are taken at once.
- Every predictor replica runs as a model-server process (Supervisor). A change to a predictor's pod
  template (anything but ``traffic`` and ``replicas``: annotations, componentSpecs, the graph) rolls its
  servers; a weight change alone restarts nothing.
- The VirtualService (``Ingress.routes``) is rewritten only when every predictor of the deployment is
  ready, i.e. each has all its replicas ready on the current template (Seldon writes Istio resources only
  once its Deployments are ready); until then requests keep the weights last written.
- ``status.state``: Available when every predictor is ready; Failed only when a predictor's Deployment
  stopped progressing (no replica of a rollout became ready within its ``progressDeadlineSeconds``, 600 s
  unless the predictor sets it) and has no available replica; else Creating. A Deployment that finished
  its rollout never times out, so a crash after that reads Creating until the server is back.
- Prometheus finds the model servers and, per namespace, the executors through file_sd targets files,
  labelled with the meta labels a pod would have (``localcluster.prometheus``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from localcluster.prometheus import EXECUTOR_TARGETS, target_group, write_targets

from .ingress import Ingress
from .routing import (
    DEFAULT_PROGRESS_DEADLINE_S,
    EXECUTOR_CONTAINER,
    desired_replicas,
    pod_template_hash,
    progress_deadline_s,
    route_for,
    servers_for,
    workload_name,
)
from .supervisor import Supervisor

log = logging.getLogger("dataplane.controller")
GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"
# Tests that drive the control loop with synthetic metrics opt their deployments out of being served.
SERVE_ANNOTATION = "localcluster.modelrollout.dev/serve"
RECONCILE_DELAY_ANNOTATION = "localcluster.modelrollout.dev/reconcile-delay-seconds"
DEFAULT_RECONCILE_DELAY_S = 1.0
MAX_UNAVAILABLE = 0.10  # Seldon's Deployments roll with maxUnavailable 10% (rounded down)
MODEL_CONTAINER = "classifier"  # the model container (PREDICTIVE_UNIT_ID) of the local model servers


def served(sdep: dict[str, Any]) -> bool:
    return ((sdep.get("metadata") or {}).get("annotations") or {}).get(SERVE_ANNOTATION) != "false"


# --------------------------------------------------------------------------------------------------
# One predictor's Deployment, as its status conditions would tell


@dataclass(frozen=True)
class PredictorView:
    """What a predictor's Deployment reports now."""

    name: str
    desired: int
    updated_ready: int  # ready replicas on the current pod template
    available: int  # ready replicas, current or previous template (a rolling update keeps the old one)
    last_ready_at: float  # when a current-template replica last became ready (0: never)


@dataclass(frozen=True)
class Rollout:
    """A predictor's Deployment rollout: since when, last progress, and whether it completed."""

    template: str
    replicas: int
    started: float
    progress: float
    complete: bool = False


def track(previous: Rollout | None, template: str, view: PredictorView, now: float) -> Rollout:
    """The rollout after this observation: a new template starts one; a scale-up is progress; a replica that
    became ready is progress; all replicas ready on the template completes it."""
    if previous is None or previous.template != template:
        rollout = Rollout(template, view.desired, now, now)
    elif view.desired > previous.replicas:
        rollout = replace(previous, replicas=view.desired, progress=now, complete=False)
    else:
        rollout = replace(previous, replicas=view.desired)
    rollout = replace(rollout, progress=max(rollout.progress, view.last_ready_at))
    if ready(view):
        rollout = replace(rollout, complete=True)
    return rollout


def ready(view: PredictorView) -> bool:
    """Seldon's test of a Deployment: no replica unavailable (every one ready on the current template)."""
    return view.updated_ready >= view.desired


def available(view: PredictorView) -> bool:
    """The Deployment's Available condition: enough ready replicas, whichever template."""
    return view.available >= view.desired - math.floor(view.desired * MAX_UNAVAILABLE)


def stalled(view: PredictorView, rollout: Rollout, deadline_s: float, now: float) -> bool:
    """No longer progressing (its rollout made no progress within the deadline) and not available."""
    if ready(view) or rollout.complete:
        return False
    return now - rollout.progress > deadline_s and not available(view)


def deployment_state(predictors: list[tuple[PredictorView, Rollout, float]], problems: list[str],
                     now: float) -> tuple[str, str]:
    """status.state and description of a SeldonDeployment from its predictors' (view, rollout, deadline)."""
    if all(ready(view) for view, _, _ in predictors):
        return "Available", ""
    stuck = [view.name for view, rollout, deadline in predictors if stalled(view, rollout, deadline, now)]
    if stuck:
        return "Failed", "; ".join([f"predictor {', '.join(stuck)}: no replica became ready within the progress "
                                    "deadline and none is available", *problems])
    return "Creating", "; ".join(problems)


# --------------------------------------------------------------------------------------------------
# The controller


class Controller:
    def __init__(self, api: client.CustomObjectsApi, supervisor: Supervisor, ingress: Ingress, models_dir: Path,
                 targets_file: Path, public_url: str, *, reconcile_delay_s: float = DEFAULT_RECONCILE_DELAY_S,
                 progress_deadline_s: float = DEFAULT_PROGRESS_DEADLINE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.supervisor = supervisor
        self.ingress = ingress
        self.models_dir = models_dir
        self.targets_file = targets_file
        self.executor_targets_file = targets_file.with_name(EXECUTOR_TARGETS)
        self.public_url = public_url
        self.reconcile_delay_s = reconcile_delay_s
        self.progress_deadline_s = progress_deadline_s
        self.clock = clock
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}  # as the controller has reconciled them
        self.pending: dict[tuple[str, str], tuple[float, str, dict[str, Any]]] = {}  # writes not acted on yet
        self.problems: dict[tuple[str, str], list[str]] = {}
        self.rollouts: dict[tuple[str, str, str], Rollout] = {}
        self.states: dict[tuple[str, str], tuple[str, str, int]] = {}
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._written: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._targets: dict[Path, str] = {}

    def _watch_forever(self, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
        """Blocking list-then-watch in a thread; events go to the asyncio queue."""
        while not stop.is_set():
            try:
                listed: Any = self.api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                loop.call_soon_threadsafe(self._events.put_nowait, ("SYNC", {"items": listed.get("items", [])}))
                version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self.api.list_cluster_custom_object, GROUP, VERSION, PLURAL, resource_version=version,
                    timeout_seconds=30)
                for event in stream:
                    loop.call_soon_threadsafe(self._events.put_nowait, (event["type"], event["object"]))
                    if stop.is_set():
                        return
            except Exception as exc:  # API server restarting, expired resourceVersion: list again
                log.warning("watch interrupted (%s); listing again", exc)
                stop.wait(1.0)

    async def run(self, stop: asyncio.Event) -> None:
        thread_stop = threading.Event()
        thread = threading.Thread(target=self._watch_forever, args=(asyncio.get_running_loop(), thread_stop),
                                  daemon=True)
        thread.start()
        status_task = asyncio.create_task(self._status_loop(stop))
        try:
            while not stop.is_set():
                due = min((d for d, _, _ in self.pending.values()), default=None)
                timeout = 1.0 if due is None else min(1.0, max(0.02, due - self.clock()))
                received = False
                try:
                    kind, obj = await asyncio.wait_for(self._events.get(), timeout=timeout)
                    self.receive(kind, obj)
                    received = True
                    while not self._events.empty():  # coalesce a burst into one reconcile
                        self.receive(*self._events.get_nowait())
                except TimeoutError:
                    pass
                if self.apply_due() or received:
                    await self.reconcile()
        finally:
            thread_stop.set()
            status_task.cancel()

    def _delay(self, obj: dict[str, Any]) -> float:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        try:
            return max(0.0, float(annotations.get(RECONCILE_DELAY_ANNOTATION, self.reconcile_delay_s)))
        except (TypeError, ValueError):
            return self.reconcile_delay_s

    def receive(self, kind: str, obj: dict[str, Any]) -> None:
        """A watch event. A new spec (or a new or deleted object) waits its reconcile delay; the rest is taken now."""
        if kind == "SYNC":
            listed = {_key(o): o for o in obj["items"] if served(o)}
            for key in [k for k in self.deployments if k not in listed]:
                self._forget(key)
            self.deployments = listed
            self.pending.clear()
            return
        key = _key(obj)
        known = self.deployments.get(key)
        if (kind == "MODIFIED" and key not in self.pending and known is not None and served(obj)
                and _generation(obj) == _generation(known)):
            self.deployments[key] = obj
            return
        due = self.pending[key][0] if key in self.pending else self.clock() + self._delay(obj)
        self.pending[key] = (due, kind, obj)

    def apply_due(self) -> bool:
        """Take the writes whose delay has passed; True when any was taken."""
        now, taken = self.clock(), False
        for key, (due, kind, obj) in list(self.pending.items()):
            if due > now:
                continue
            del self.pending[key]
            taken = True
            if kind == "DELETED" or not served(obj):
                if self.deployments.pop(key, None) is not None:
                    self._forget(key)
            else:
                self.deployments[key] = obj
        return taken

    def _forget(self, key: tuple[str, str]) -> None:
        self.ingress.forget(*key)
        self.problems.pop(key, None)
        self.states.pop(key, None)
        self._written.pop(key, None)
        for rollout_key in [k for k in self.rollouts if k[:2] == key]:
            del self.rollouts[rollout_key]

    async def reconcile(self) -> None:
        desired = []
        self.problems = {}
        for key, sdep in self.deployments.items():
            servers, problems = servers_for(sdep, self.models_dir)
            desired.extend(servers)
            if problems:
                self.problems[key] = problems
        await self.supervisor.reconcile(desired)
        self.evaluate()

    def _view(self, namespace: str, deployment: str, predictor: dict[str, Any]) -> PredictorView:
        name, desired = str(predictor.get("name")), desired_replicas(predictor)
        current = [s for key, s in self.supervisor.servers.items()
                   if key[:3] == (namespace, deployment, name) and key[3] < desired and not s.stopping]
        ready_now = [s for s in current if s.ready]
        return PredictorView(name, desired, len(ready_now),
                             len(self.supervisor.ready_endpoints(namespace, deployment, name)),
                             max((s.ready_at for s in ready_now), default=0.0))

    def evaluate(self) -> None:
        """Each deployment's state from its predictors' Deployments; the VirtualService once all are ready."""
        now = self.clock()
        for key, sdep in self.deployments.items():
            namespace, name = key
            predictors = (sdep.get("spec") or {}).get("predictors") or []
            assessed = []
            for predictor in predictors:
                view = self._view(namespace, name, predictor)
                rollout_key = (namespace, name, view.name)
                rollout = track(self.rollouts.get(rollout_key), pod_template_hash(sdep, predictor), view, now)
                self.rollouts[rollout_key] = rollout
                assessed.append((view, rollout, progress_deadline_s(predictor, self.progress_deadline_s)))
            names = {view.name for view, _, _ in assessed}
            for stale in [k for k in self.rollouts if k[:2] == key and k[2] not in names]:
                del self.rollouts[stale]
            state, description = deployment_state(assessed, self.problems.get(key, []), now)
            if state == "Available":
                self.ingress.routes[key] = route_for(sdep)
            self.states[key] = (state, description, sum(view.available for view, _, _ in assessed))

    async def _status_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.evaluate()
            self._write_targets()
            for key, sdep in list(self.deployments.items()):
                await self._write_status(key, sdep)
            await asyncio.sleep(0.5)

    async def _write_status(self, key: tuple[str, str], sdep: dict[str, Any]) -> None:
        namespace, name = key
        if key not in self.states:
            return
        state, description, replicas = self.states[key]
        wanted = (state, description, replicas)
        if self._written.get(key) == wanted:
            return
        body = {"status": {"state": state, "description": description, "replicas": replicas,
                           "address": {"url": f"{self.public_url}/seldon/{namespace}/{name}/api/v1.0/predictions"}}}
        try:
            await asyncio.to_thread(self.api.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL,
                                    name, body, _content_type="application/merge-patch+json")
            self._written[key] = wanted
        except ApiException as exc:
            if exc.status != 404:
                log.warning("status of %s/%s: %s %s", namespace, name, exc.status, exc.reason)

    def target_groups(self) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """file_sd groups: every model-server process (a pod's model container), and per namespace with a
        served deployment its executors' series on the ingress (/metrics/<namespace>)."""
        workloads = {(ns, dep, str(p.get("name"))): workload_name(dep, p)
                     for (ns, dep), sdep in self.deployments.items()
                     for p in (sdep.get("spec") or {}).get("predictors") or []}
        servers = [target_group(
            f"127.0.0.1:{s.metrics_port}", s.spec.namespace,
            pod=f"{workloads.get(s.spec.key[:3], s.spec.deployment)}-{s.spec.template}-{s.spec.replica}",
            container=MODEL_CONTAINER) for s in self.supervisor.servers.values()]
        address = urlparse(self.public_url).netloc
        executors = [target_group(address, ns, metrics_path=f"/metrics/{ns}", container=EXECUTOR_CONTAINER)
                     for ns in sorted({ns for ns, _ in self.deployments})]
        return servers, executors

    def _write_targets(self) -> None:
        servers, executors = self.target_groups()
        for path, groups in ((self.targets_file, servers), (self.executor_targets_file, executors)):
            text = _dump(groups)
            if text != self._targets.get(path):
                self._targets[path] = write_targets(path, groups)


def _dump(groups: list[dict[str, object]]) -> str:
    return json.dumps(groups, indent=1, sort_keys=True)  # as write_targets writes it


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "default")), str(meta.get("name", ""))


def _generation(obj: dict[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("generation")
