"""The local ingress: Seldon's URL layout, Istio-style weighted routing and mirroring, executor metrics.

    POST /seldon/<namespace>/<deployment>/api/v1.0/predictions   → one live predictor, by traffic weight
    POST /seldon/<namespace>/<deployment>/api/v1.0/feedback      → the predictor named by the
                                                                   `Seldon-Predictor` header, else by weight
    GET  /metrics                                                → seldon_api_executor_server_requests_seconds
    GET  /dataplane/status                                       → predictors, processes, ports (JSON)

Each answer carries a `Seldon-Predictor` header naming who answered. Shadow predictors get a copy of
every prediction request; their answers are counted in the metrics and discarded.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .routing import DeploymentRoute, live_choice, shadows
from .supervisor import ServerProcess, Supervisor

# The executor's own buckets would do; these resolve the latencies a rollout gates on (tens of ms to s).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
PREDICTOR_HEADER = "Seldon-Predictor"


class Ingress:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.routes: dict[tuple[str, str], DeploymentRoute] = {}
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "seldon_api_executor_server_requests_seconds", "Requests through the executor, by predictor",
            ["deployment_name", "predictor_name", "code", "method", "service", "namespace"],
            buckets=BUCKETS, registry=self.registry)
        self._round_robin: dict[tuple[str, str, str], itertools.count[int]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post("/seldon/{namespace}/{deployment}/api/v1.0/{service:predictions|feedback}", self.handle)
        app.router.add_get("/metrics", self.metrics)
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

    def ready_predictors(self, route: DeploymentRoute) -> set[str]:
        return {p.name for p in route.predictors
                if self.supervisor.ready_endpoints(route.namespace, route.deployment, p.name)}

    def _endpoint(self, namespace: str, deployment: str, predictor: str) -> ServerProcess | None:
        endpoints = self.supervisor.ready_endpoints(namespace, deployment, predictor)
        if not endpoints:
            return None
        counter = self._round_robin.setdefault((namespace, deployment, predictor), itertools.count())
        return endpoints[next(counter) % len(endpoints)]

    async def handle(self, request: web.Request) -> web.Response:
        namespace, deployment = request.match_info["namespace"], request.match_info["deployment"]
        service = request.match_info["service"]
        route = self.routes.get((namespace, deployment))
        if route is None:
            return web.json_response({"status": {"code": 404, "info": f"no SeldonDeployment {namespace}/{deployment}",
                                                 "status": "FAILURE"}}, status=404)
        body = await request.read()
        ready = self.ready_predictors(route)
        named = request.headers.get(PREDICTOR_HEADER)
        predictor = named if service == "feedback" and named in ready else live_choice(route, ready)
        if predictor is None:
            # Counted too: users got this answer, and a success rate that missed it would flatter.
            self.requests.labels(deployment, "", "503", "POST", service, namespace).observe(0.0)
            return web.json_response({"status": {"code": 503, "status": "FAILURE",
                                                 "info": f"no ready predictor in {namespace}/{deployment}"}},
                                     status=503)
        if service == "predictions":
            for mirror in shadows(route, ready):
                task = asyncio.create_task(self._mirror(namespace, deployment, mirror, body))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        started = time.perf_counter()
        status, payload, content_type, unreachable = await self._forward(namespace, deployment, predictor, service,
                                                                         body)
        if unreachable and service == "predictions":
            # As Istio retries a connect failure once: the dead endpoint is out of routing by now.
            retry = live_choice(route, self.ready_predictors(route))
            if retry is not None:
                predictor = retry
                status, payload, content_type, unreachable = await self._forward(namespace, deployment, predictor,
                                                                                 service, body)
        if unreachable:  # the user gets this 503: count it (a retried one they never saw is not counted)
            self.requests.labels(deployment, predictor, "503", "POST", service, namespace).observe(
                time.perf_counter() - started)
        return web.Response(status=status, body=payload, content_type=content_type,
                            headers={PREDICTOR_HEADER: predictor})

    async def _mirror(self, namespace: str, deployment: str, predictor: str, body: bytes) -> None:
        await self._forward(namespace, deployment, predictor, "predictions", body)  # answer discarded

    async def _forward(self, namespace: str, deployment: str, predictor: str, service: str,
                       body: bytes) -> tuple[int, bytes, str, bool]:
        """Send to one ready endpoint of the predictor; the flag says it could not be reached (not counted)."""
        started = time.perf_counter()
        endpoint = self._endpoint(namespace, deployment, predictor)
        status, payload, content_type = 503, b'{"status": {"code": 503, "info": "no endpoint"}}', "application/json"
        if endpoint is not None and self._session is not None:
            endpoint.in_flight += 1
            try:
                async with self._session.post(f"{endpoint.url}/api/v1.0/{service}", data=body,
                                              headers={"Content-Type": "application/json"}) as resp:
                    status, payload = resp.status, await resp.read()
                    content_type = resp.content_type or "application/json"
            except aiohttp.ClientConnectionError as exc:
                # The process died under us: take it out of routing until the supervisor sees it again.
                endpoint.ready = False
                info = f"upstream {predictor}: {type(exc).__name__}"
                payload = f'{{"status": {{"code": 503, "info": "{info}"}}}}'.encode()
                return 503, payload, content_type, True
            except (TimeoutError, aiohttp.ClientError) as exc:
                info = f"upstream {predictor}: {type(exc).__name__}"
                status, payload = 503, f'{{"status": {{"code": 503, "info": "{info}"}}}}'.encode()
            finally:
                endpoint.in_flight -= 1
        self.requests.labels(deployment, predictor, str(status), "POST", service, namespace).observe(
            time.perf_counter() - started)
        return status, payload, content_type, False

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def status(self, _: web.Request) -> web.Response:
        servers: list[dict[str, Any]] = [
            {"namespace": s.spec.namespace, "deployment": s.spec.deployment, "predictor": s.spec.predictor,
             "replica": s.spec.replica, "modelUri": s.spec.model_uri, "version": s.version, "ready": s.ready,
             "restarts": s.restarts, "pid": s.proc.pid if s.proc else None, "httpPort": s.http_port,
             "metricsPort": s.metrics_port, "adminPort": s.admin_port, "inFlight": s.in_flight}
            for s in self.supervisor.servers.values()]
        routes = {f"{ns}/{dep}": [{"name": p.name, "traffic": p.traffic, "shadow": p.shadow} for p in r.predictors]
                  for (ns, dep), r in self.routes.items()}
        return web.json_response({"servers": servers, "routes": routes})
