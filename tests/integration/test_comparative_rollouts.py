"""Rollouts judged against the stable model, on the real kube-apiserver and a real Prometheus scraping a
controlled exporter: the same candidate traffic passes or fails depending on what the stable model does,
which no threshold can express."""

from __future__ import annotations

from typing import Any

from localcluster.executor_exporter import ExecutorExporter, Traffic
from testkit.processes import OperatorProcess
from testkit.rollouts import model_rollout
from testkit.waiting import wait_for
from tests.integration.conftest import Start

# A comparison needs the stable to serve: the steps end below 100% and promotion moves the rest.
STEPS = [{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 50}]


def compared(tolerance: float) -> dict[str, Any]:
    return {"interval": "2s", "failureLimit": 2, "inconclusiveLimit": 4, "minRequests": 5,
            "metrics": [{"name": "success-rate", "template": "request-success-rate", "window": "6s",
                         "compare": {"tolerance": tolerance, "minSamples": 50}}]}


def test_a_candidate_worse_than_the_stable_is_rolled_back_with_the_comparison_in_words(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start) -> None:
    # 5% errors would pass a 0.95 threshold; the stable answers everything, and 1% is all that is tolerated.
    exporter.set(namespace, "digits", "main", Traffic(rps=40, error_ratio=0.0))
    exporter.set(namespace, "digits", "main-candidate", Traffic(rps=40, error_ratio=0.05))
    rollout = start_rollout(model_rollout(steps=STEPS, analysis=compared(0.01)))
    status = rollout.wait_phase("RolledBack", "Succeeded", timeout=90)
    assert status["phase"] == "RolledBack", status
    check = next(c for c in status["analysis"]["lastChecks"] if c["metric"] == "success-rate")
    assert check["verdict"] == "Fail" and check["baseline"] == 1.0 and 0.9 < check["value"] < 0.99
    assert "vs stable 1" in check["message"] and "worse by" in check["message"] and "tolerated 0.01" in check["message"]
    assert 'predictor_name="main"' in check["baselineQuery"]
    assert rollout.traffic() == {"main": 100}
    wait_for(lambda: rollout.events("RolledBack"), "a RolledBack Event")


def test_a_candidate_as_noisy_as_the_stable_is_promoted(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start) -> None:
    # Both fail 1 request in 100: a 0.995 threshold would roll this candidate back; compared with the
    # stable it is no worse. (Proving "no worse by more than 0.02" takes samples: about 600 a side here;
    # at 160 a side the interval of the difference is wider than the tolerance and the check says so.)
    exporter.set(namespace, "digits", "main", Traffic(rps=100, error_ratio=0.01))
    exporter.set(namespace, "digits", "main-candidate", Traffic(rps=100, error_ratio=0.01))
    rollout = start_rollout(model_rollout(steps=STEPS, analysis=compared(0.02)))
    status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=120)
    assert status["phase"] == "Succeeded", status
    check = next(c for c in status["analysis"]["lastChecks"] if c["metric"] == "success-rate")
    assert check["verdict"] == "Pass" and check["baseline"] is not None
