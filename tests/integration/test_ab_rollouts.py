"""A/B tests against the real kube-apiserver and a real Prometheus scraping a controlled exporter: the
primary is the success rate compared with the stable's over the whole test, the latency a guardrail."""

from __future__ import annotations

from typing import Any

from localcluster.executor_exporter import ExecutorExporter, Traffic
from testkit.kube import Kube
from testkit.processes import OperatorProcess
from testkit.recorder import RolloutRecorder
from testkit.rollouts import model_rollout
from testkit.waiting import wait_for
from tests.integration.conftest import Start

DURATION_S = 16
ANALYSIS = {"interval": "2s", "failureLimit": 2, "inconclusiveLimit": 20, "minRequests": 5,
            "metrics": [{"name": "success-rate", "template": "request-success-rate",
                         "compare": {"tolerance": 0.01, "minSamples": 100}},
                        {"name": "latency-p99", "template": "request-duration-p99", "max": 0.25, "window": "4s"}]}


def start_ab_test(exporter: ExecutorExporter, namespace: str, start_rollout: Start, *, stable_errors: float,
                  candidate_errors: float, **test: Any) -> RolloutRecorder:
    """Both predictors' traffic as given, then an A/B test of 2.0.0 on the success rate, once at its split."""
    exporter.set(namespace, "digits", "main", Traffic(rps=60, error_ratio=stable_errors))
    exporter.set(namespace, "digits", "main-candidate", Traffic(rps=60, error_ratio=candidate_errors))
    obj = model_rollout(analysis=ANALYSIS)
    obj["spec"]["strategy"] = {"abTest": {"weight": 50, "duration": f"{DURATION_S}s", "primary": "success-rate",
                                          **test}}
    rollout = start_rollout(obj)
    rollout.wait(lambda s: s.get("candidateWeight") == 50, "the 50/50 split")
    return rollout


def test_a_candidate_better_on_the_primary_wins_and_becomes_the_stable_model(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start, cluster: Kube) -> None:
    rollout = start_ab_test(exporter, namespace, start_rollout, stable_errors=0.06, candidate_errors=0.0)
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
    rollout = start_ab_test(exporter, namespace, start_rollout, stable_errors=0.0, candidate_errors=0.0)
    status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", status
    assert status["history"][-1]["reason"] == "ABTestStableKept"
    assert "no winner beyond the tolerance" in status["message"]
    assert rollout.traffic() == {"main": 100}
    assert cluster.get("sdep", "digits", namespace)["spec"]["predictors"][0]["graph"]["modelUri"].endswith("/1.0.0")


def test_a_worse_candidate_is_removed_before_the_test_ends(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start) -> None:
    rollout = start_ab_test(exporter, namespace, start_rollout, stable_errors=0.0, candidate_errors=0.3,
                            duration="10m")
    status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=60)  # long before 10 minutes
    assert status["phase"] == "RolledBack", status
    assert "success-rate" in status["message"] and rollout.traffic() == {"main": 100}
