"""Watches SeldonDeployments and keeps the local data plane in line with them, as Seldon's controller would.

- every predictor replica runs as a model-server process (Supervisor);
- the ingress routes by the predictors' current traffic (a change applies on the next request);
- status.state is Creating until every predictor has a ready server, then Available, with the address;
- Prometheus finds the model servers' metrics endpoints through a file_sd targets file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from .ingress import Ingress
from .routing import route_for, servers_for
from .supervisor import Supervisor

log = logging.getLogger("dataplane.controller")
GROUP, VERSION, PLURAL = "machinelearning.seldon.io", "v1", "seldondeployments"
# Tests that drive the control loop with synthetic metrics opt their deployments out of being served.
SERVE_ANNOTATION = "localcluster.modelrollout.dev/serve"


def served(sdep: dict[str, Any]) -> bool:
    return ((sdep.get("metadata") or {}).get("annotations") or {}).get(SERVE_ANNOTATION) != "false"


class Controller:
    def __init__(self, api: client.CustomObjectsApi, supervisor: Supervisor, ingress: Ingress, models_dir: Path,
                 targets_file: Path, public_url: str) -> None:
        self.api = api
        self.supervisor = supervisor
        self.ingress = ingress
        self.models_dir = models_dir
        self.targets_file = targets_file
        self.public_url = public_url
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.problems: dict[tuple[str, str], list[str]] = {}
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._written: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._targets = ""

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
                try:
                    kind, obj = await asyncio.wait_for(self._events.get(), timeout=1.0)
                except TimeoutError:
                    continue
                self._apply_event(kind, obj)
                while not self._events.empty():  # coalesce a burst into one reconcile
                    self._apply_event(*self._events.get_nowait())
                await self._reconcile()
        finally:
            thread_stop.set()
            status_task.cancel()

    def _apply_event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "SYNC":
            self.deployments = {_key(o): o for o in obj["items"] if served(o)}
            return
        if kind == "DELETED" or not served(obj):
            self.deployments.pop(_key(obj), None)
        elif kind in ("ADDED", "MODIFIED"):
            self.deployments[_key(obj)] = obj

    async def _reconcile(self) -> None:
        desired = []
        self.problems = {}
        for key, sdep in self.deployments.items():
            servers, problems = servers_for(sdep, self.models_dir)
            desired.extend(servers)
            if problems:
                self.problems[key] = problems
        await self.supervisor.reconcile(desired)
        self.ingress.routes = {key: route_for(sdep) for key, sdep in self.deployments.items()}

    async def _status_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._write_targets()
            for key, sdep in list(self.deployments.items()):
                await self._write_status(key, sdep)
            await asyncio.sleep(0.5)

    async def _write_status(self, key: tuple[str, str], sdep: dict[str, Any]) -> None:
        namespace, name = key
        predictors = (sdep.get("spec") or {}).get("predictors") or []
        waiting = [p["name"] for p in predictors
                   if (p.get("replicas") is None or int(p["replicas"]) > 0)
                   and not self.supervisor.ready_endpoints(namespace, name, p["name"])]
        problems = self.problems.get(key, [])
        state = "Failed" if problems else ("Creating" if waiting else "Available")
        description = "; ".join(problems) or (f"waiting for {', '.join(waiting)}" if waiting else "")
        replicas = sum(len(self.supervisor.ready_endpoints(namespace, name, p["name"])) for p in predictors)
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

    def _write_targets(self) -> None:
        groups = [{"targets": [f"127.0.0.1:{s.metrics_port}"],
                   "labels": {"namespace": s.spec.namespace, "deployment_name": s.spec.deployment,
                              "predictor_name": s.spec.predictor, "replica": str(s.spec.replica)}}
                  for s in self.supervisor.servers.values()]
        text = json.dumps(groups, indent=1, sort_keys=True)
        if text != self._targets:
            self.targets_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.targets_file.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.targets_file)  # atomic: Prometheus never reads half a file
            self._targets = text


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "default")), str(meta.get("name", ""))
