"""Fixtures for the model server suite: trained artifacts and real seldon-core server processes.

Run with the model server's own environment: .venv-model-server/bin/python -m pytest tests/model_server
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

seldon_core = pytest.importorskip(
    "seldon_core", reason="needs the model server venv (model_server/setup-env.sh)"
)

# seldon-core's generated protobuf modules make descriptor calls that protobuf now deprecates; import
# them once here, quietly, so those warnings don't bury the suite's own.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import modelserver.server  # noqa: F401

import requests  # noqa: E402
from modelserver import train  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

MICROSERVICE = Path(sys.executable).with_name("seldon-core-microservice")
USER_CLASS = "modelserver.server.DigitsClassifier"
METRICS_PATH = "/prometheus"
READY_DEADLINE_S = 45.0
STOP_DEADLINE_S = 15.0

# Every request in this suite goes to 127.0.0.1; never through a proxy from the environment.
os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], deadline_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {deadline_s:.0f}s waiting for {what}")


@dataclass
class ServerProcess:
    """One `seldon-core-microservice` process group on loopback ports."""

    model_dir: Path
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def predict_url(self) -> str:
        return f"{self.base_url}/api/v1.0/predictions"

    @property
    def feedback_url(self) -> str:
        return f"{self.base_url}/api/v1.0/feedback"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{METRICS_PATH}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/faults"

    @property
    def admin_enabled(self) -> bool:
        return self.extra_env.get("MODEL_ADMIN_ENABLED", "") not in ("", "0")

    def start(self, wait_ready: bool = True) -> ServerProcess:
        env = {
            # The admin API is what each test says it is, never what the calling shell had.
            **{k: v for k, v in os.environ.items() if not k.startswith("MODEL_ADMIN_")},
            "MODEL_URI": self.model_dir.as_uri(),
            "PREDICTIVE_UNIT_HTTP_SERVICE_PORT": str(self.http_port),
            "PREDICTIVE_UNIT_METRICS_SERVICE_PORT": str(self.metrics_port),
            "PREDICTIVE_UNIT_METRICS_ENDPOINT": METRICS_PATH,
            "MODEL_ADMIN_PORT": str(self.admin_port),
            "GRPC_WORKERS": "0",
            "INCLUDE_METRICS_IN_CLIENT_RESPONSE": "false",
            **self.extra_env,
        }
        log = self.log_path.open("wb")
        # Its own session: teardown can then end exactly this server's process group.
        self.process = subprocess.Popen(
            [str(MICROSERVICE), USER_CLASS, "--service-type", "MODEL"],
            cwd=self.log_path.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if not wait_ready:
            return self
        try:
            wait_until(self._ready, READY_DEADLINE_S, f"model server on port {self.http_port} to be ready")
        except BaseException:
            self.stop()
            raise
        return self

    def wait_exit(self, deadline_s: float = READY_DEADLINE_S) -> int:
        """The exit status of a server expected to refuse to start."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"model server still running after {deadline_s:.0f}s:\n{self.log_tail()}") from None

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"model server exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            health = requests.get(f"{self.base_url}/health/status", timeout=2)
            metrics = requests.get(self.metrics_url, timeout=2)
            admin_ok = (not self.admin_enabled
                        or requests.get(self.admin_url, timeout=2, headers=self.admin_headers()).status_code == 200)
        except requests.ConnectionError:
            return False
        return health.status_code == 200 and metrics.status_code == 200 and admin_ok

    def admin_headers(self) -> dict[str, str]:
        token = self.extra_env.get("MODEL_ADMIN_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid  # session leader: its pid is the group id
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_DEADLINE_S)
        # Whatever of the group is left (metrics server, admin process, manager) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_DEADLINE_S)

    def predict(self, rows: list[list[float]], **meta_tags: Any) -> requests.Response:
        body: dict[str, Any] = {"data": {"ndarray": rows}}
        if meta_tags:
            body["meta"] = {"tags": meta_tags}
        return requests.post(self.predict_url, json=body, timeout=10)

    def scrape(self) -> list[Any]:
        response = requests.get(self.metrics_url, timeout=5)
        response.raise_for_status()
        return [
            sample for family in text_string_to_metric_families(response.text) for sample in family.samples
        ]


def metric_total(samples: list[Any], name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (over workers and methods)."""
    return sum(
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    train.train(root, seed=train.DEFAULT_SEED)
    return root


@pytest.fixture(scope="session")
def model_dir(models_root: Path) -> Callable[[str], Path]:
    return lambda version: models_root / train.MODEL_NAME / version


@pytest.fixture(scope="session")
def dataset() -> train.Dataset:
    return train.load_dataset(train.DEFAULT_SEED)


@pytest.fixture(scope="session")
def start_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(model_dir: Path, wait_ready: bool = True, **extra_env: str) -> ServerProcess:
        workdir = tmp_path_factory.mktemp("server")
        server = ServerProcess(model_dir=model_dir, log_path=workdir / "server.log", extra_env=extra_env)
        started.append(server)
        return server.start(wait_ready=wait_ready)

    yield start
    for server in started:
        server.stop()
