"""End-to-end fixtures: the real control plane, the local Seldon data plane with real model servers,
the shared Prometheus, Locust traffic through the ingress and the operator as its own process.

Per test, ``e2e`` gives a fresh namespace with SeldonDeployment digits (main at 1.0.0) Available, and
starts Locust, the operator, rollouts and fault injection on demand (``testkit.scenario.Stage``).
Teardown, in this order: faults and recorders stop, Locust stops, the operator stops, the ModelRollout
and SeldonDeployment are deleted and the data plane must have stopped their model servers.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import services as local_services
from testkit.kube import Kube
from testkit.locust import Locust
from testkit.recorder import TrafficWatch
from testkit.scenario import Stage
from testkit.seldon import deploy, digits_sdep, ensure_models


@pytest.fixture(scope="session")
def dataplane(cluster: Kube) -> local_services.Services:
    """The shared data plane and Prometheus (reused when healthy, never stopped by the tests)."""
    ensure_models()
    return local_services.up()


class E2E(Stage):
    def teardown(self) -> None:
        errors = self.close()
        if errors:
            raise AssertionError(f"teardown: {'; '.join(errors)}")


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


def traffic_and_operator(e2e: E2E, seconds: int, feedback_share: float = 0.3) -> tuple[Path, Locust, TrafficWatch]:
    """Locust recording which version answered each prediction (and sending ground truth back for
    ``feedback_share`` of them), a watch on the deployment's predictors, both bounded by ``seconds``, and
    the operator."""
    record = e2e.workdir / "answers.csv"
    locust = e2e.start_locust(users=4, duration_s=seconds, FEEDBACK_SHARE=str(feedback_share),
                              RECORD_FILE=str(record))
    e2e.wait_traffic()
    watch = TrafficWatch(e2e.kube, e2e.namespace, "digits", max_seconds=seconds).start()
    e2e.start_operator()
    return record, locust, watch


def answers(record: Path) -> list[tuple[float, str]]:
    """(unix time sent, version that answered) of every answered prediction Locust recorded."""
    with record.open() as f:
        return [(float(row[0]), row[3]) for row in csv.reader(f) if row and row[3]]


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
