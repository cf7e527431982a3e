"""A/B tests against the real kube-apiserver and a real Prometheus scraping a controlled exporter: the
primary is the success rate compared with the stable's over the whole test, the latency a guardrail."""

from __future__ import annotations

from typing import Any

from localcluster.executor_exporter import ExecutorExporter, Traffic
from testkit.kube import Kube
from testkit.processes import OperatorProcess
from testkit.rollouts import model_rollout
from testkit.waiting import wait_for
from tests.integration.conftest import Start

DURATION_S = 16
ANALYSIS = {"interval": "2s", "failureLimit": 2, "inconclusiveLimit": 20, "minRequests": 5,
            "metrics": [{"name": "success-rate", "template": "request-success-rate",
                         "compare": {"tolerance": 0.01, "minSamples": 100}},
                        {"name": "latency-p99", "template": "request-duration-p99", "max": 0.25, "window": "4s"}]}


def ab_rollout(**test: Any) -> dict[str, Any]:
    obj = model_rollout(analysis=ANALYSIS)
    obj["spec"]["strategy"] = {"abTest": {"weight": 50, "duration": f"{DURATION_S}s", "primary": "success-rate",
                                          **test}}
    return obj


def test_a_candidate_better_on_the_primary_wins_and_becomes_the_stable_model(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start, cluster: Kube) -> None:
    exporter.set(namespace, "digits", "main", Traffic(rps=60, error_ratio=0.06))
    exporter.set(namespace, "digits", "main-candidate", Traffic(rps=60, error_ratio=0.0))
    rollout = start_rollout(ab_rollout())
    rollout.wait(lambda s: s.get("candidateWeight") == 50, "the 50/50 split")
    assert rollout.traffic() == {"main": 50, "main-candidate": 50}
    status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert rollout.traffic() == {"main": 100}
    assert cluster.get("sdep", "digits", namespace)["spec"]["predictors"][0]["graph"]["modelUri"].endswith("/2.0.0")
    won = wait_for(lambda: rollout.events("ABTestCandidateWon"), "the decision's Event")
    message = won[-1]["message"]
    assert "2.0.0 beats" in message and "better by" in message and "CI [" in message, message
    primary = next(c for c in status["analysis"]["lastChecks"] if c["metric"] == "success-rate")
    assert primary["better"] is True and primary["window"] in (f"{DURATION_S}s", f"{DURATION_S + 1}s",
                                                                f"{DURATION_S + 2}s")


def test_a_tie_keeps_the_stable_model_and_removes_the_candidate(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start, cluster: Kube) -> None:
    exporter.set(namespace, "digits", "main", Traffic(rps=60, error_ratio=0.0))
    exporter.set(namespace, "digits", "main-candidate", Traffic(rps=60, error_ratio=0.0))
    rollout = start_rollout(ab_rollout())
    rollout.wait(lambda s: s.get("candidateWeight") == 50, "the 50/50 split")
    status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", status
    assert status["history"][-1]["reason"] == "ABTestStableKept"
    assert "no winner beyond the tolerance" in status["message"]
    assert rollout.traffic() == {"main": 100}
    assert cluster.get("sdep", "digits", namespace)["spec"]["predictors"][0]["graph"]["modelUri"].endswith("/1.0.0")


def test_a_worse_candidate_is_removed_before_the_test_ends(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start) -> None:
    exporter.set(namespace, "digits", "main", Traffic(rps=60, error_ratio=0.0))
    exporter.set(namespace, "digits", "main-candidate", Traffic(rps=60, error_ratio=0.3))
    rollout = start_rollout(ab_rollout(duration="10m"))
    rollout.wait(lambda s: s.get("candidateWeight") == 50, "the 50/50 split")
    status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=60)  # long before 10 minutes
    assert status["phase"] == "RolledBack", status
    assert "success-rate" in status["message"] and rollout.traffic() == {"main": 100}
