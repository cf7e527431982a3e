"""Faults on the local data plane: find model servers, inject latency and errors, kill processes.

Used by the chaos scenarios, the end-to-end tests and the benchmarks. Everything here talks
to loopback only: the ingress's ``/dataplane/status`` and each model server's fault admin API
(``model_server/modelserver/faults.py``: ``GET|PUT|DELETE /faults`` on the server's ``adminPort``).

The admin API is off unless a server is started with ``MODEL_ADMIN_ENABLED=1``, and then every call needs
``Authorization: Bearer <MODEL_ADMIN_TOKEN>``. The local data plane starts its model servers that way with
one token per local cluster, kept in ``ADMIN_TOKEN_FILE`` (owner-only): ``admin_token()``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from localcluster.model_admin import ADMIN_TOKEN_FILE, admin_token
from localcluster.processes import signal_group
from testkit.waiting import wait_for

ADMIN_PATH = "/faults"


def _request(url: str, method: str = "GET", body: dict[str, Any] | None = None, timeout: float = 3.0,
             token: str | None = None) -> Any:
    if not url.startswith("http://127."):
        raise ValueError(f"refusing a non-loopback URL {url!r}")
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def _admin(server: dict[str, Any], method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    url = admin_url(server)
    try:
        return _request(url, method, body, token=admin_token())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise urllib.error.URLError(f"{url}: the model server refused the admin token in {ADMIN_TOKEN_FILE}; "
                                        "was it started by another data plane?") from exc
        raise
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise urllib.error.URLError(
                f"{url}: nothing listens; the model server's fault admin API is off. The data plane must start "
                "it with MODEL_ADMIN_ENABLED=1 and the token (a data plane from before that change must be "
                "restarted: python -m localcluster.services down && python -m localcluster.services up)") from exc
        raise


# --------------------------------------------------------------------------------------------------
# Finding servers


def dataplane_status(ingress_url: str) -> dict[str, Any]:
    """The data plane's view: {"servers": [...], "routes": {...}}."""
    return dict(_request(f"{ingress_url}/dataplane/status"))


def servers(ingress_url: str, namespace: str, deployment: str | None = None,
            predictor: str | None = None) -> list[dict[str, Any]]:
    """Model-server processes of a namespace (optionally one deployment / predictor)."""
    return [s for s in dataplane_status(ingress_url)["servers"]
            if s["namespace"] == namespace and (deployment is None or s["deployment"] == deployment)
            and (predictor is None or s["predictor"] == predictor)]


def ready_server(ingress_url: str, namespace: str, deployment: str, predictor: str) -> dict[str, Any] | None:
    for server in servers(ingress_url, namespace, deployment, predictor):
        if server["ready"] and server["pid"]:
            return server
    return None


def wait_ready_server(ingress_url: str, namespace: str, deployment: str, predictor: str,
                      timeout: float = 60.0, predicate: Callable[[dict[str, Any]], bool] | None = None
                      ) -> dict[str, Any]:
    """Poll until a ready server of that predictor exists (and satisfies predicate); fail after timeout."""
    def ready() -> dict[str, Any] | None:
        server = ready_server(ingress_url, namespace, deployment, predictor)
        return server if server is not None and (predicate is None or predicate(server)) else None
    return wait_for(ready, f"a ready server for {namespace}/{deployment}/{predictor}", timeout=timeout, interval=0.1)


# --------------------------------------------------------------------------------------------------
# Fault knobs (admin API)


def admin_url(server: dict[str, Any]) -> str:
    return f"http://127.0.0.1:{int(server['adminPort'])}{ADMIN_PATH}"


def get_faults(server: dict[str, Any]) -> dict[str, Any]:
    return dict(_admin(server))


def set_faults(server: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """PUT the changes (latency_ms, latency_jitter_ms, latency_distribution, error_rate, error_status)."""
    return dict(_admin(server, "PUT", changes))


def clear_faults(server: dict[str, Any]) -> dict[str, Any]:
    return dict(_admin(server, "DELETE"))


@dataclass
class FaultArmer:
    """Injects faults on a predictor's servers as soon as each becomes ready (a restarted one too).

    Runs a bounded background thread polling ``/dataplane/status`` every ``poll_s``. ``injected_at``
    is the monotonic time of the first injection (the fault's start), ``pids`` the servers faulted.
    """

    ingress_url: str
    namespace: str
    deployment: str
    predictor: str
    faults: dict[str, Any]
    max_seconds: float = 600.0
    poll_s: float = 0.1
    injected_at: float | None = None
    pids: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FaultArmer:
        self._thread = threading.Thread(target=self._run, name=f"faults-{self.predictor}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                for server in servers(self.ingress_url, self.namespace, self.deployment, self.predictor):
                    if server["ready"] and server["pid"] and server["pid"] not in self.pids:
                        set_faults(server, **self.faults)
                        self.pids.append(server["pid"])
                        if self.injected_at is None:
                            self.injected_at = time.monotonic()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.poll_s)

    def wait_injected(self, timeout: float = 60.0) -> float:
        """Until the first injection; its monotonic time."""
        try:
            return wait_for(lambda: self.injected_at, f"faults {self.faults} injected on {self.predictor}",
                            timeout=timeout, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; errors: {self.errors[-3:]}") from None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --------------------------------------------------------------------------------------------------
# Processes


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    """Kill one model server by pid (its own process group: seldon-core forks gunicorn workers).
    Whether it is gone: ``localcluster.processes.pid_alive``."""
    try:
        signal_group(pid, sig)
    except PermissionError:
        os.kill(pid, sig)


# --------------------------------------------------------------------------------------------------
# Probing through the ingress


@dataclass
class Answer:
    at: float  # monotonic, when the request was sent
    status: int
    seconds: float
    version: str  # the model version that answered (its meta.tags), "" when none did


def _answered_version(payload: bytes) -> str:
    """The version a prediction names (meta.tags served_model_version, else model_version): no header on a
    Seldon answer says which predictor answered, but the model's tags do."""
    try:
        tags = (json.loads(payload).get("meta") or {}).get("tags") or {}
    except (ValueError, AttributeError):
        return ""
    return str(tags.get("served_model_version") or tags.get("model_version") or "")


def predict(ingress_url: str, namespace: str, deployment: str = "digits", timeout: float = 10.0) -> Answer:
    """One prediction through the ingress (an all-zero 8x8 image); never raises for HTTP errors."""
    url = f"{ingress_url}/seldon/{namespace}/{deployment}/api/v1.0/predictions"
    if not url.startswith("http://127."):
        raise ValueError(f"refusing a non-loopback URL {url!r}")
    body = json.dumps({"data": {"ndarray": [[0.0] * 64]}}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            payload = resp.read()
            return Answer(started, resp.status, time.monotonic() - started, _answered_version(payload))
    except urllib.error.HTTPError as exc:
        exc.read()
        return Answer(started, exc.code, time.monotonic() - started, "")
    except (urllib.error.URLError, OSError):
        return Answer(started, 0, time.monotonic() - started, "")
