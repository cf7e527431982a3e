"""Integration fixtures: a real Prometheus scraping a test exporter, and the operator pointed at it."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.executor_exporter import ExecutorExporter
from localcluster.prometheus import PrometheusServer
from tests.support import Kube, OperatorProcess, wait_for

REPO = Path(__file__).resolve().parents[2]
SDEP = yaml.safe_load((REPO / "examples" / "seldondeployment.yaml").read_text())
UNSERVED_SDEP = {**SDEP, "metadata": {**SDEP["metadata"],
                                      "annotations": {"localcluster.modelrollout.dev/serve": "false"}}}


@pytest.fixture(scope="session")
def exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExecutorExporter]:
    server = ExecutorExporter(tmp_path_factory.mktemp("executors") / "executors.json").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prometheus(exporter: ExecutorExporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    # One target per namespace the exporter knows; Prometheus adds the namespace label (PodMonitor-style).
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [exporter.scrape_job()],
                              scrape_interval="1s").start()
    yield server
    server.stop()


@pytest.fixture
def operator(cluster: Kube, namespace: str, prometheus: PrometheusServer,
             tmp_path: Path) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(cluster, tmp_path / "operator.log",
                           extra_args=("--namespace", namespace, "--prometheus-url", prometheus.url)).start()
    yield proc
    proc.stop()


@pytest.fixture
def deployment(cluster: Kube, namespace: str, exporter: ExecutorExporter) -> dict[str, Any]:
    """The example SeldonDeployment "digits" (stable predictor "main" at 1.0.0) in the test namespace.

    Metrics here come from the controlled exporter, so the local data plane (when running) is told not
    to serve it; the exporter's target for the namespace exists from now on, as its pods' would.
    """
    exporter.watch(namespace)
    cluster.apply(UNSERVED_SDEP, namespace)
    return cluster.get("sdep", "digits", namespace)


def rollout_spec(steps: list[dict[str, Any]], **analysis: Any) -> dict[str, Any]:
    """A ModelRollout of digits 2.0.0 with short intervals, so a whole rollout takes seconds."""
    settings = {"interval": "2s", "failureLimit": 2, "inconclusiveLimit": 3, "minRequests": 5,
                "metrics": [{"name": "success-rate", "template": "request-success-rate", "min": 0.95, "window": "4s"},
                            {"name": "latency-p99", "template": "request-duration-p99", "max": 0.25,
                             "window": "4s"}]}
    settings.update(analysis)
    return {
        "apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout",
        "metadata": {"name": f"digits-{uuid.uuid4().hex[:5]}"},
        "spec": {"targetRef": {"kind": "SeldonDeployment", "name": "digits"}, "stablePredictor": "main",
                 "candidate": {"modelUri": "file:///models/digits/2.0.0", "version": "2.0.0"},
                 "strategy": {"canary": {"steps": copy.deepcopy(steps)}}, "analysis": settings},
    }


class RolloutWatch:
    """Reads a rollout and its target, and waits on them with deadlines."""

    def __init__(self, kube: Kube, namespace: str, name: str) -> None:
        self.kube, self.namespace, self.name = kube, namespace, name

    def status(self) -> dict[str, Any]:
        return dict(self.kube.get("mro", self.name, self.namespace).get("status") or {})

    def traffic(self) -> dict[str, int]:
        sdep = self.kube.get("sdep", "digits", self.namespace)
        return {p["name"]: p.get("traffic", 0) for p in sdep["spec"]["predictors"]}

    def wait_phase(self, *phases: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status()
            return status if status.get("phase") in phases else None
        try:
            return wait_for(reached, f"{self.name} to reach {'/'.join(phases)}", timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nstatus: {yaml.safe_dump(self.status())}") from None

    def wait(self, condition: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(lambda: (lambda s: s if condition(s) else None)(self.status()), what, timeout=timeout)

    def annotate(self, action: str) -> None:
        self.kube.run("annotate", "--overwrite", "mro", self.name, "-n", self.namespace,
                      f"modelrollout.dev/action={action}")

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.kube.events(self.name, self.namespace) if e["reason"] == reason]


@pytest.fixture
def start_rollout(cluster: Kube, namespace: str) -> Callable[[dict[str, Any]], RolloutWatch]:
    def start(obj: dict[str, Any]) -> RolloutWatch:
        cluster.create(obj, namespace)
        return RolloutWatch(cluster, namespace, obj["metadata"]["name"])
    return start


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
