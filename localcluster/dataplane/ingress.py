"""The local ingress: Istio's gateway with Seldon's VirtualServices, and each predictor pod's executor.

    POST /seldon/<namespace>/<deployment>/api/v1.0/predictions   → one predictor, by the VirtualService's weights
    POST /seldon/<namespace>/<deployment>/api/v1.0/feedback      → the same way: the route has no header match
    GET  /metrics/<namespace>   → that namespace's executor series, seldon_api_executor_server_requests_seconds
    GET  /stats/prometheus      → the gateway's istio_requests_total (a pod in istio-system)
    GET  /dataplane/status      → servers (pods), their template hash and readiness; routes as applied (JSON)

What it models, and where from:

- Routing (Istio, as Seldon's controller configures it: ``createIstioResources`` in
  operator/controllers/seldondeployment_controller.go). ``routes`` holds each deployment's VirtualService
  as the controller last wrote it. Each request goes to one non-shadow predictor by weight, whether it has
  a ready server or not; the last shadow predictor gets a copy (its traffic percent, or all) whose answer
  is discarded. Answers carry no header naming the predictor: nothing on a cluster does.
- The mesh. A chosen predictor without a ready endpoint fails at the gateway: 503 ``no healthy upstream``
  (response_flags UH), counted in ``istio_requests_total`` and never by an executor. A connection refused
  is retried, as Istio's default retry policy does (connect-failure, 2 retries, previous hosts), on
  another ready endpoint of the same predictor only, never another predictor; with none left it is a
  503 at the gateway too (UF,URX). A model-server process stands for its whole pod (executor included),
  so a connection it resets is the gateway's 503 too (UC, not retried by that policy).
- The executor (executor/api/rest/server.go, executor/api/metric): every request that reaches a
  predictor's pod is observed, with the pod's deployment_name, predictor_name, predictor_version (its
  ``version`` annotation), service (predictions, feedback), method ``post`` and code (the status it
  answered), in the executor's buckets; a model that times out makes the executor answer 500.
  The series carry no namespace: Prometheus adds it when it scrapes ``/metrics/<namespace>`` (see
  ``localcluster.prometheus``). Series of a deployment go when it is deleted, as its pods' would.
- Beyond Istio: each mirrored prediction's answer is compared with the live answer to the same request
  (``dataplane_mirror_answers_total``, rows that agree or disagree on the class, in the namespace's
  executor series). Istio's mirror discards the shadow's answer, so a real cluster has no such series;
  the shadow's own executor and model-server counters (errors, latency, predicted classes) it does have.

Not modelled: Istio's retries of upstream 503s (its default ``retriable-status-codes``), the executor's
``_summary`` and client-side (executor → model) metrics, gRPC, and sidecar (reporter="destination") stats.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .routing import (
    CONNECT_FAILED,
    CONNECTION_TERMINATED,
    EXECUTOR_HELP,
    EXECUTOR_LABELS,
    EXECUTOR_METRIC,
    MESH_HELP,
    MESH_LABELS,
    MESH_METRIC,
    MIRROR_HELP,
    MIRROR_LABELS,
    MIRROR_METRIC,
    NO_FLAGS,
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    DeploymentRoute,
    Histogram,
    PredictorRoute,
    compare_answers,
    executor_labels,
    mesh_labels,
    mirror_of,
    pick,
    predicted_classes,
    render_counters,
    render_histograms,
)
from .supervisor import ServerProcess, Supervisor

MESH_RETRIES = 2  # Istio's default retry policy: 2 retries on connect failure, on other hosts
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MESH_BODY = {NO_HEALTHY_UPSTREAM: b"no healthy upstream",
              CONNECT_FAILED: b"upstream connect error or disconnect/reset before headers. "
                              b"reset reason: connection failure",
              CONNECTION_TERMINATED: b"upstream connect error or disconnect/reset before headers. "
                                     b"reset reason: connection termination"}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str
    upstream: bool  # the gateway picked an endpoint (it knows the destination workload)
    flags: str = NO_FLAGS  # NO_FLAGS: an executor answered; else the gateway did, for this reason

    @classmethod
    def from_mesh(cls, flags: str, upstream: bool) -> Answer:
        return cls(503, _MESH_BODY[flags], "text/plain", upstream, flags)


class Ingress:
    def __init__(self, supervisor: Supervisor, rng: random.Random | None = None, retries: int = MESH_RETRIES) -> None:
        self.supervisor = supervisor
        self.rng = rng or random.Random()
        self.retries = retries
        # Each deployment's VirtualService as the controller last wrote it (it writes only when every
        # predictor of the deployment is ready).
        self.routes: dict[tuple[str, str], DeploymentRoute] = {}
        # namespace → executor label values → histogram; (namespace, deployment) → mesh label values → count
        self.executor: dict[str, dict[tuple[str, ...], Histogram]] = {}
        self.mesh: dict[tuple[str, str], dict[tuple[str, ...], float]] = {}
        # Mirrored prediction rows compared with the live answer, by namespace (MIRROR_LABELS values).
        self.mirror_answers: dict[str, dict[tuple[str, ...], float]] = {}
        self._round_robin: dict[tuple[str, str, str], itertools.count[int]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/seldon/{namespace}/{deployment}/api/v1.0/{service:predictions|feedback}", self.handle)
        app.router.add_get("/metrics/{namespace}", self.executor_metrics)
        app.router.add_get("/metrics", self.no_metrics)
        app.router.add_get("/stats/prometheus", self.mesh_metrics)
        app.router.add_get("/dataplane/status", self.status)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=512, limit_per_host=128)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))

    async def _close(self, _: web.Application) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def forget(self, namespace: str, deployment: str) -> None:
        """The deployment is gone: its VirtualService, its pods' executor series and the gateway's series."""
        self.routes.pop((namespace, deployment), None)
        self.mesh.pop((namespace, deployment), None)
        series = self.executor.get(namespace, {})
        for labels in [labels for labels in series if labels[0] == deployment]:
            del series[labels]
        if not series:
            self.executor.pop(namespace, None)
        compared = self.mirror_answers.get(namespace, {})
        for labels in [labels for labels in compared if labels[0] == deployment]:
            del compared[labels]
        for key in [k for k in self._round_robin if k[:2] == (namespace, deployment)]:
            del self._round_robin[key]

    def _endpoint(self, namespace: str, deployment: str, predictor: str, tried: set[int]) -> ServerProcess | None:
        """A ready endpoint of the predictor not tried yet for this request (round robin)."""
        endpoints = [e for e in self.supervisor.ready_endpoints(namespace, deployment, predictor) if id(e) not in tried]
        if not endpoints:
            return None
        counter = self._round_robin.setdefault((namespace, deployment, predictor), itertools.count())
        return endpoints[next(counter) % len(endpoints)]

    async def handle(self, request: web.Request) -> web.Response:
        namespace, deployment = request.match_info["namespace"], request.match_info["deployment"]
        service = request.match_info["service"]
        route = self.routes.get((namespace, deployment))
        if route is None:  # no VirtualService matches the path: Envoy answers 404 itself
            self._count_mesh(namespace, deployment, None, Answer(404, b"", "text/plain", False, NO_ROUTE),
                             request.host)
            return web.Response(status=404)
        body = await request.read()
        mirror = mirror_of(route)
        destination = pick(route, self.rng)
        live: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        if mirror is not None and self.rng.random() * 100 < mirror.percent:
            task = asyncio.create_task(self._mirror(namespace, deployment, mirror.predictor.name, service, body,
                                                    destination, live))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        try:
            answer = await self._send(namespace, deployment, destination, service, body)
            live.set_result(answer)
        finally:
            if not live.done():
                live.cancel()  # the request was cancelled or failed: the mirror has nothing to compare with
        self._count_mesh(namespace, deployment, destination, answer, request.host)
        return web.Response(status=answer.status, body=answer.body, content_type=answer.content_type)

    async def _send(self, namespace: str, deployment: str, destination: PredictorRoute | None, service: str,
                    body: bytes) -> Answer:
        """To a ready endpoint of the destination; a refused connection is retried on another endpoint of the
        same destination only. With no endpoint left the gateway answers 503 itself."""
        tried: set[int] = set()
        for _ in range(1 + self.retries):
            if destination is None:
                break
            endpoint = self._endpoint(namespace, deployment, destination.name, tried)
            if endpoint is None:
                break
            tried.add(id(endpoint))
            answer = await self._executor(endpoint, service, body)
            if answer.flags != CONNECT_FAILED:
                return answer
        return Answer.from_mesh(CONNECT_FAILED, True) if tried else Answer.from_mesh(NO_HEALTHY_UPSTREAM, False)

    async def _mirror(self, namespace: str, deployment: str, predictor: str, service: str, body: bytes,
                      destination: PredictorRoute | None, live: asyncio.Future[Answer]) -> None:
        """The shadow's copy: its executor counts it and nobody gets its answer; a prediction's answer is
        compared with the live one (``MIRROR_METRIC``), which Istio's mirror does not do."""
        endpoint = self._endpoint(namespace, deployment, predictor, set())
        if endpoint is None:
            return
        shadow = await self._executor(endpoint, service, body)
        try:
            live_answer = await live
        except asyncio.CancelledError:
            return
        if service != "predictions" or destination is None or live_answer.status != 200:
            return
        if shadow.status != 200:  # the live model answered and the shadow did not: no row agreed
            compared: tuple[int, int, int] | None = (0, 0, len(predicted_classes(live_answer.body) or [None]))
        else:
            pair = compare_answers(live_answer.body, shadow.body)
            compared = None if pair is None else (*pair, 0)
        if compared is None:
            return
        series = self.mirror_answers.setdefault(namespace, {})
        for outcome, rows in zip(("agree", "disagree", "error"), compared, strict=True):
            if not rows and outcome == "error":
                continue
            labels = (deployment, predictor, destination.name, outcome)
            series[labels] = series.get(labels, 0.0) + rows

    async def _executor(self, endpoint: ServerProcess, service: str, body: bytes) -> Answer:
        """One request to a predictor pod, observed by its executor when the pod answers; when the connection
        is refused (flags CONNECT_FAILED: retriable) or reset, the gateway's answer instead."""
        if self._session is None:
            return Answer.from_mesh(CONNECT_FAILED, True)
        started = time.perf_counter()
        endpoint.in_flight += 1
        try:
            async with self._session.post(f"{endpoint.url}/api/v1.0/{service}", data=body,
                                          headers={"Content-Type": "application/json"}) as resp:
                status, payload = resp.status, await resp.read()
                content_type = resp.content_type or "application/json"
        except aiohttp.ClientConnectorError:
            # Nothing listens: the pod is gone. Out of routing until the supervisor sees it ready again.
            endpoint.ready = False
            return Answer.from_mesh(CONNECT_FAILED, True)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
            # The pod reset the connection (it died under the request, or a pooled connection to it was stale).
            return Answer.from_mesh(CONNECTION_TERMINATED, True)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # The model did not answer in time: the executor answers 500.
            status, content_type = 500, "application/json"
            payload = f'{{"status": {{"code": 500, "info": "{type(exc).__name__}", "status": "FAILURE"}}}}'.encode()
        finally:
            endpoint.in_flight -= 1
        self._observe(endpoint, service, status, time.perf_counter() - started)
        return Answer(status, payload, content_type, True)

    def _observe(self, endpoint: ServerProcess, service: str, status: int, seconds: float) -> None:
        series = self.executor.setdefault(endpoint.spec.namespace, {})
        labels = executor_labels(endpoint.spec, service, status)
        series.setdefault(labels, Histogram()).observe(seconds)

    def _count_mesh(self, namespace: str, deployment: str, destination: PredictorRoute | None, answer: Answer,
                    host: str) -> None:
        labels = mesh_labels(namespace, destination, answer.upstream, answer.status, answer.flags, host)
        counts = self.mesh.setdefault((namespace, deployment), {})
        counts[labels] = counts.get(labels, 0.0) + 1

    async def executor_metrics(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        if not _NAMESPACE.fullmatch(namespace):
            return web.Response(status=404, text=f"{namespace!r} is not a namespace name\n")
        text = render_histograms(EXECUTOR_METRIC, EXECUTOR_HELP, EXECUTOR_LABELS, self.executor.get(namespace, {}))
        text += render_counters(MIRROR_METRIC, MIRROR_HELP, MIRROR_LABELS, self.mirror_answers.get(namespace, {}))
        return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE})

    async def no_metrics(self, _: web.Request) -> web.Response:
        return web.Response(status=404, text="executor series are per namespace: /metrics/<namespace>; "
                                             "the gateway's at /stats/prometheus\n")

    async def mesh_metrics(self, _: web.Request) -> web.Response:
        merged: dict[tuple[str, ...], float] = {}
        for counts in self.mesh.values():
            for labels, value in counts.items():
                merged[labels] = merged.get(labels, 0.0) + value
        text = render_counters(MESH_METRIC, MESH_HELP, MESH_LABELS, merged)
        return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE})

    async def status(self, _: web.Request) -> web.Response:
        servers: list[dict[str, Any]] = [
            {"namespace": s.spec.namespace, "deployment": s.spec.deployment, "predictor": s.spec.predictor,
             "replica": s.spec.replica, "modelUri": s.spec.model_uri, "version": s.version, "ready": s.ready,
             "restarts": s.restarts, "pid": s.proc.pid if s.proc else None, "httpPort": s.http_port,
             "metricsPort": s.metrics_port, "adminPort": s.admin_port, "inFlight": s.in_flight,
             "templateHash": s.spec.template, "predictorVersion": s.spec.predictor_version}
            for s in self.supervisor.servers.values()]
        routes = {f"{ns}/{dep}": [{"name": p.name, "traffic": p.traffic, "shadow": p.shadow, "service": p.service}
                                  for p in r.predictors]
                  for (ns, dep), r in self.routes.items()}
        return web.json_response({"servers": servers, "routes": routes})
