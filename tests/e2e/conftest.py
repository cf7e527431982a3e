"""End-to-end fixtures: the real control plane, the local Seldon data plane with real model servers,
the shared Prometheus, Locust traffic through the ingress and the operator as its own process.

Per test, ``e2e`` gives a fresh namespace with SeldonDeployment digits (main at 1.0.0) Available, and
starts Locust, the operator, rollouts and fault injection on demand. Teardown, in this order: faults
and recorders stop, Locust stops, the operator stops, the ModelRollout and SeldonDeployment are
deleted and the data plane must have stopped their model servers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos import faults
from chaos.harness import (
    Locust,
    RolloutRecorder,
    delete_deployments,
    deploy,
    digits_sdep,
    ensure_models,
)
from localcluster import services as local_services
from tests.support import Kube, OperatorProcess

CANDIDATE = "main-candidate"


@pytest.fixture(scope="session")
def dataplane(cluster: Kube) -> local_services.Services:
    """The shared data plane and Prometheus (reused when healthy, never stopped by the tests)."""
    ensure_models()
    return local_services.up()


class E2E:
    def __init__(self, kube: Kube, namespace: str, svc: local_services.Services, workdir: Path) -> None:
        self.kube, self.namespace, self.services, self.workdir = kube, namespace, svc, workdir
        self.locust: Locust | None = None
        self.operator: OperatorProcess | None = None
        self.recorders: list[RolloutRecorder] = []
        self.armers: list[faults.FaultArmer] = []
        self.teardown_errors: list[str] = []

    @property
    def ingress_url(self) -> str:
        return self.services.ingress_url

    @property
    def prometheus_url(self) -> str:
        return self.services.prometheus_url

    def start_locust(self, users: int = 4, duration_s: int = 150, **env: str) -> Locust:
        self.locust = Locust(self.ingress_url, self.namespace, self.workdir, users=users, duration_s=duration_s,
                             env=env).start()
        return self.locust

    def wait_traffic(self, predictions: float = 20, timeout: float = 30) -> None:
        """Until Prometheus has seen Locust's predictions for this namespace through the ingress."""
        from chaos.harness import ingress_requests
        from tests.support import wait_for
        wait_for(lambda: ingress_requests(self.prometheus_url, self.namespace) >= predictions,
                 f"{predictions:.0f} predictions for {self.namespace} in Prometheus", timeout=timeout, interval=0.5)

    def start_operator(self, prometheus_url: str | None = None, extra: tuple[str, ...] = ()) -> OperatorProcess:
        self.operator = OperatorProcess(
            self.kube, self.workdir / "operator.log",
            extra_args=("--namespace", self.namespace, "--prometheus-url", prometheus_url or self.prometheus_url,
                        *extra),
        ).start()
        return self.operator

    def start_rollout(self, obj: dict[str, Any]) -> RolloutRecorder:
        self.kube.create(obj, self.namespace)
        recorder = RolloutRecorder(self.kube, self.namespace, obj["metadata"]["name"]).start()
        self.recorders.append(recorder)
        return recorder

    def arm_faults(self, predictor: str = CANDIDATE, **knobs: Any) -> faults.FaultArmer:
        armer = faults.FaultArmer(self.ingress_url, self.namespace, "digits", predictor, knobs).start()
        self.armers.append(armer)
        return armer

    def servers(self, predictor: str | None = None) -> list[dict[str, Any]]:
        return faults.servers(self.ingress_url, self.namespace, "digits", predictor)

    def teardown(self) -> None:
        for armer in self.armers:
            armer.stop()
        for recorder in self.recorders:
            recorder.stop()
        if self.locust is not None:
            self.locust.stop()
        if self.operator is not None:
            self.operator.stop()
        delete_deployments(self.kube, self.ingress_url, self.namespace)


@pytest.fixture
def e2e(cluster: Kube, namespace: str, dataplane: local_services.Services, tmp_path: Path,
        request: pytest.FixtureRequest) -> Iterator[E2E]:
    env = E2E(cluster, namespace, dataplane, tmp_path)
    try:
        deploy(cluster, namespace, digits_sdep("1.0.0"))
        yield env
    finally:
        env.teardown()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for recorder in env.recorders:
                print(f"\nrollout {recorder.name} timeline:\n{recorder.timeline()}")
            if env.operator is not None:
                print("\noperator log (tail):\n" + env.operator.log()[-4000:])
            if env.locust is not None:
                print("\nlocust log (tail):\n" + env.locust.log()[-2000:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


# AnalysisTemplates on the model servers' own metrics (scraped per predictor through the data plane's
# file_sd targets, labelled namespace / deployment_name / predictor_name by Prometheus).
# Accuracy is the example's own query: keyed on the version that answered ({{candidateVersion}}), summed
# over every predictor, so it holds however feedback is routed.
FEEDBACK_ACCURACY: str = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "examples" / "analysistemplate-accuracy.yaml").read_text())["spec"]["query"]
# `or vector(0)`: a model that never predicts 8 has no class="8" series at all; without it the ratio is
# an empty result (inconclusive) exactly for the model it is meant to catch.
CLASS_8_SHARE = (
    '(sum(rate(predictions_total{namespace="{{namespace}}",deployment_name="{{target}}",'
    'predictor_name="{{candidate}}",class="8"}[{{interval}}])) or vector(0))'
    ' / sum(rate(predictions_total{namespace="{{namespace}}",deployment_name="{{target}}",'
    'predictor_name="{{candidate}}"}[{{interval}}]))')


def analysis_template(name: str, query: str) -> dict[str, Any]:
    return {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
            "spec": {"query": query}}
