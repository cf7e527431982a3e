"""Model-server processes for the local data plane, kept as a Deployment would keep its pods.

Starts one seldon-core microservice per (predictor, replica) from the model server's own environment,
waits for its readiness endpoint, restarts it with backoff when it dies, and drains it (no requests in
flight) before stopping it when its predictor goes away. A new pod template (``ServerSpec.template``: the
model, the predictor's annotations, componentSpecs...) replaces a replica's process as a rolling update
replaces its pod: the old one serves until the new one is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from localcluster.model_admin import admin_token
from localcluster.processes import free_port, signal_group, spawn

from .routing import ServerSpec

log = logging.getLogger("dataplane.supervisor")
READY_DEADLINE_S = 60.0
DRAIN_DEADLINE_S = 15.0
MAX_BACKOFF_S = 30.0


@dataclass
class ServerProcess:
    spec: ServerSpec
    http_port: int
    metrics_port: int
    admin_port: int
    proc: subprocess.Popen[bytes] | None = None
    ready: bool = False
    in_flight: int = 0
    restarts: int = 0
    started_at: float = 0.0
    ready_at: float = 0.0  # monotonic time it last became ready (its Deployment's progress)
    stopping: bool = False
    version: str = ""
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


class Supervisor:
    def __init__(self, venv: Path, log_dir: Path) -> None:
        self.venv = venv
        self.log_dir = log_dir
        self.servers: dict[tuple[str, str, str, int], ServerProcess] = {}
        self._session: aiohttp.ClientSession | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.retiring: dict[tuple[str, str, str, int], ServerProcess] = {}  # replaced, serving until then

    async def __aenter__(self) -> Supervisor:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        return self

    async def __aexit__(self, *exc: object) -> None:
        everything = [*self.servers.values(), *self.retiring.values()]
        await asyncio.gather(*(self._stop(server, drain=False) for server in everything),
                             *self._stopping, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def ready_endpoints(self, namespace: str, deployment: str, predictor: str) -> list[ServerProcess]:
        """Ready processes of a predictor; an old one still serves until its replacement is ready."""
        endpoints = []
        for key, server in self.servers.items():
            if key[:3] != (namespace, deployment, predictor) or server.stopping:
                continue
            if server.ready:
                endpoints.append(server)
            elif (old := self.retiring.get(key)) is not None and old.ready and not old.stopping:
                endpoints.append(old)
        return endpoints

    async def reconcile(self, desired: Iterable[ServerSpec]) -> None:
        """Make the running set match the desired one.

        A changed spec (a new model for the same replica) is a rolling update: the old process keeps
        serving until its replacement is ready, then drains and stops; a removed one drains at once.
        """
        wanted = {spec.key: spec for spec in desired}
        for key, server in list(self.servers.items()):
            if key not in wanted:
                self.servers.pop(key)
                self._retire(server)
            elif wanted[key] != server.spec:
                self.servers.pop(key)
                previous = self.retiring.pop(key, None)
                if previous is not None:  # replaced twice before the first replacement was ready
                    self._retire(previous)
                self.retiring[key] = server
        for key, spec in wanted.items():
            if key not in self.servers:
                server = ServerProcess(spec, free_port(), free_port(), free_port())
                self.servers[key] = server
                server.watcher = asyncio.create_task(self._keep_running(server))
        for key in [k for k in self.retiring if k not in wanted]:
            self._retire(self.retiring.pop(key))

    def _retire(self, server: ServerProcess) -> None:
        server.stopping = True  # out of routing from now on; in-flight requests may finish
        task = asyncio.create_task(self._stop(server, drain=True))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def _spawn(self, server: ServerProcess) -> None:
        spec = server.spec
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")},
            **dict(spec.env),
            "MODEL_URI": spec.model_path,
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(server.http_port),
            "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(server.metrics_port),
            "MODEL_ADMIN_PORT": str(server.admin_port),
            "MODEL_ADMIN_ENABLED": "1",  # the fault admin API, off by default, for testkit/faults.py
            "MODEL_ADMIN_TOKEN": admin_token(),
            "GRPC_WORKERS": "0",
            "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",
            # The labels Seldon's operator sets on a model container, which seldon-core puts on its metrics.
            "SELDON_DEPLOYMENT_ID": spec.deployment,
            "PREDICTOR_ID": spec.predictor,
            "PREDICTIVE_UNIT_ID": "classifier",
            "SELDON_EXECUTOR_NAMESPACE": spec.namespace,
        }
        logfile = self.log_dir / f"{spec.namespace}.{spec.deployment}.{spec.predictor}.{spec.replica}.log"
        server.proc = spawn([str(self.venv / "bin" / "seldon-core-microservice"), "modelserver.server.DigitsClassifier",
                             "--service-type", "MODEL"], logfile, env=env)
        server.started_at = time.monotonic()
        server.ready = False

    async def _probe(self, server: ServerProcess) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(f"{server.url}/health/status") as resp:
                if resp.status != 200:
                    return False
                body = await resp.json(content_type=None)
                # seldon-core wraps what health_status returns (in jsonData); accept it bare too
                identity = body.get("jsonData", body) if isinstance(body, dict) else {}
                server.version = str(identity.get("version", "")) if isinstance(identity, dict) else ""
                return True
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return False

    async def _keep_running(self, server: ServerProcess) -> None:
        """Start the process, mark it ready when it answers, restart it with backoff when it dies."""
        backoff = 1.0
        while not server.stopping:
            self._spawn(server)
            assert server.proc is not None
            while not server.stopping and server.proc.poll() is None:
                if not server.ready:
                    if await self._probe(server):
                        server.ready = True
                        server.ready_at = time.monotonic()
                        backoff = 1.0
                        log.info("ready: %s on %s", server.spec.key, server.url)
                        old = self.retiring.pop(server.spec.key, None)
                        if old is not None:  # the rolling update is done: the old model may go
                            self._retire(old)
                    elif time.monotonic() - server.started_at > READY_DEADLINE_S:
                        log.warning("not ready after %.0fs, restarting: %s", READY_DEADLINE_S, server.spec.key)
                        self._kill(server)
                        break
                await asyncio.sleep(0.2 if not server.ready else 0.5)
            server.ready = False
            if server.stopping:
                return
            server.restarts += 1
            log.warning("model server %s exited (%s); restart %d in %.0fs", server.spec.key,
                        server.proc.returncode, server.restarts, backoff)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)

    @staticmethod
    def _kill(server: ServerProcess, sig: int = signal.SIGKILL) -> None:
        if server.proc is not None and server.proc.poll() is None:
            signal_group(server.proc.pid, sig)

    async def _stop(self, server: ServerProcess, drain: bool) -> None:
        server.stopping = True
        if drain:  # removed from routing already (not ready for new requests): let in-flight ones finish
            deadline = time.monotonic() + DRAIN_DEADLINE_S
            while server.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        self._kill(server, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while server.proc is not None and server.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self._kill(server)
        if server.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=5)
        if server.watcher is not None and server.watcher is not asyncio.current_task():
            server.watcher.cancel()
