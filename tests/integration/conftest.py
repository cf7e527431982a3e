"""Integration fixtures: a real Prometheus scraping a test exporter, and the operator pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster.executor_exporter import ExecutorExporter
from localcluster.prometheus import PrometheusServer
from testkit.kube import Kube
from testkit.processes import OperatorProcess
from testkit.recorder import RolloutRecorder
from testkit.seldon import digits_sdep

Start = Callable[[dict[str, Any]], RolloutRecorder]


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
    cluster.apply(digits_sdep("1.0.0", served=False), namespace)
    return cluster.get("sdep", "digits", namespace)


def watch_rollout(kube: Kube, namespace: str, name: str) -> RolloutRecorder:
    """A rollout read on demand (not recorded), waits of 60 s by default."""
    return RolloutRecorder(kube, namespace, name, timeout=60, interval=0.2)


@pytest.fixture
def start_rollout(cluster: Kube, namespace: str) -> Start:
    def start(obj: dict[str, Any]) -> RolloutRecorder:
        cluster.create(obj, namespace)
        return watch_rollout(cluster, namespace, obj["metadata"]["name"])
    return start
