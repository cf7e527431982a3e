"""Rollouts on SeldonDeployments shaped like real ones, through Seldon's webhook and CRD as the local
cluster serves them: a stable predictor with `seldon.io/svc-name`, a transformer in front of the model,
a shadow predictor, a third predictor holding 20%, written as v1alpha3."""

from __future__ import annotations

import copy
from typing import Any

from localcluster.executor_exporter import ExecutorExporter, Traffic
from testkit.kube import Kube
from testkit.processes import OperatorProcess
from testkit.recorder import TrafficWatch
from testkit.rollouts import EXPORTER_ANALYSIS, model_rollout
from tests.integration.conftest import Start

GOOD = Traffic(rps=40, error_ratio=0.0, latency_s=0.02)
GOOD_GRPC = Traffic(rps=40, error_ratio=0.0, latency_s=0.02, grpc=True)

REAL_SHAPED: dict[str, Any] = {
    "apiVersion": "machinelearning.seldon.io/v1alpha3",
    "kind": "SeldonDeployment",
    "metadata": {"name": "digits", "annotations": {"localcluster.modelrollout.dev/serve": "false"}},
    "spec": {
        "name": "digits",
        "predictors": [
            {"name": "main", "traffic": 80, "replicas": 3,
             "annotations": {"seldon.io/svc-name": "digits-main", "version": "1.0.0"},
             "componentSpecs": [{"replicas": 3, "hpaSpec": {"minReplicas": 3, "maxReplicas": 6},
                                 "spec": {"containers": [{"name": "features", "image": "features:1.4"}]}}],
             "graph": {"name": "features", "type": "TRANSFORMER",
                       "children": [{"name": "classifier", "type": "MODEL", "implementation": "SKLEARN_SERVER",
                                     "modelUri": "file:///models/digits/1.0.0"}]}},
            {"name": "legacy", "traffic": 20,
             "graph": {"name": "classifier", "implementation": "SKLEARN_SERVER",
                       "modelUri": "file:///models/digits/1.0.0"}},
            {"name": "mirror", "shadow": True,
             "graph": {"name": "classifier", "implementation": "SKLEARN_SERVER",
                       "modelUri": "file:///models/digits/2.2.0-biased"}},
        ],
    },
}


def _without_traffic(predictor: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in predictor.items() if k != "traffic"}


def test_a_rollout_on_a_real_shaped_deployment_goes_to_100_percent_without_rolling_the_candidate(
        exporter: ExecutorExporter, cluster: Kube, namespace: str, operator: OperatorProcess,
        start_rollout: Start) -> None:
    exporter.watch(namespace)  # scraped before the rollout starts
    cluster.apply(copy.deepcopy(REAL_SHAPED), namespace)  # Seldon's webhook and CRD accept it as written
    exporter.set(namespace, "digits", "main-candidate", GOOD_GRPC)  # a gRPC deployment's series
    exporter.set(namespace, "digits", "main", GOOD)
    watch = TrafficWatch(cluster, namespace, "digits").start()
    try:
        rollout = start_rollout(model_rollout(steps=[{"setWeight": 10}, {"setWeight": 50}, {"setWeight": 100}],
                                              analysis=EXPORTER_ANALYSIS))
        status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=120)
    finally:
        watch.stop()
    assert status["phase"] == "Succeeded", status  # a webhook refusal would have failed it
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    assert checks["success-rate"]["value"] == 1.0 and checks["latency-p99"]["value"] is not None, checks
    shares = [v for v in watch.history if "main-candidate" in v]
    assert {v["main-candidate"] for v in shares} >= {8, 40, 80}  # 10%, 50%, 100% of the 80 the rollout owns
    assert all(v["legacy"] == 20 for v in watch.history)  # the third predictor keeps its share throughout
    candidates = [next(p for p in v if p["name"] == "main-candidate") for v in watch.versions
                  if any(p["name"] == "main-candidate" for p in v)]
    # Seldon copies a predictor's spec (all but traffic and replicas) into its pods: one template throughout.
    assert len({repr(sorted(_without_traffic(c).items())) for c in candidates}) == 1, candidates
    candidate = candidates[0]
    assert candidate["graph"]["children"][0]["modelUri"] == "file:///models/digits/2.0.0"  # the MODEL node
    assert "modelUri" not in candidate["graph"]  # the transformer in front of it is untouched
    assert "seldon.io/svc-name" not in candidate["annotations"] and candidate["annotations"]["version"] == "2.0.0"
    assert candidate["replicas"] == 1 and "hpaSpec" not in candidate["componentSpecs"][0]
    final = cluster.get("sdep", "digits", namespace)["spec"]["predictors"]
    by_name = {p["name"]: p for p in final}
    assert set(by_name) == {"main", "legacy", "mirror"}
    assert by_name["main"]["traffic"] == 80 and by_name["legacy"]["traffic"] == 20
    assert by_name["main"]["graph"]["children"][0]["modelUri"] == "file:///models/digits/2.0.0"
    assert by_name["main"]["annotations"] == {"seldon.io/svc-name": "digits-main", "version": "2.0.0"}
    assert by_name["mirror"] == REAL_SHAPED["spec"]["predictors"][2]
