"""Model quality beyond errors and latency: candidates that answer every request fine but answer wrong.

AnalysisTemplates query the model servers' own metrics: accuracy from ground-truth feedback
(`feedback_outcomes_total{outcome}`, Locust sends the true labels back to the predictor that answered)
and the share of predictions of one class (`predictions_total{class}`)."""

from __future__ import annotations

from chaos.harness import prom_value, rollout, traffic
from tests.e2e.conftest import CANDIDATE, CLASS_8_SHARE, E2E, FEEDBACK_ACCURACY, analysis_template

HOLD = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
SUCCESS = {"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "10s"}


def candidate_5xx(e2e: E2E) -> float:
    query = (f'sum(seldon_api_executor_server_requests_seconds_count{{namespace="{e2e.namespace}",'
             f'predictor_name="{CANDIDATE}",code=~"5.."}}) or vector(0)')
    return prom_value(e2e.prometheus_url, query) or 0.0


def test_degraded_candidate_is_rolled_back_on_feedback_accuracy(e2e: E2E) -> None:
    locust = e2e.start_locust(users=4, FEEDBACK_SHARE="0.7")
    e2e.wait_traffic()
    e2e.start_operator()
    e2e.kube.create(analysis_template("feedback-accuracy", FEEDBACK_ACCURACY), e2e.namespace)
    mro = e2e.start_rollout(rollout("2.1.0-degraded", HOLD, name="digits-degraded", metrics=[
        SUCCESS, {"name": "accuracy", "templateRef": {"name": "feedback-accuracy"}, "min": 0.9, "window": "10s"}]))
    status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", f"{status}\n{mro.timeline()}"
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    assert checks["accuracy"]["verdict"] == "Fail" and checks["accuracy"]["value"] < 0.9, checks
    assert checks["success-rate"]["verdict"] == "Pass" and checks["success-rate"]["value"] == 1.0, checks
    assert "accuracy" in status["message"], status["message"]
    assert traffic(e2e.kube, e2e.namespace) == {"main": 100}
    # A model that fails quietly: not one 5xx from the candidate, and none seen by users.
    assert candidate_5xx(e2e) == 0
    locust.stop()
    assert locust.stats().failures == 0, locust.failures()


def test_biased_candidate_is_rolled_back_on_class_share(e2e: E2E) -> None:
    e2e.start_locust(users=4, FEEDBACK_SHARE="0.2")
    e2e.wait_traffic()
    e2e.start_operator()
    e2e.kube.create(analysis_template("class-8-share", CLASS_8_SHARE), e2e.namespace)
    # digits has ~10% eights; a candidate that (almost) never predicts 8 is biased.
    mro = e2e.start_rollout(rollout("2.2.0-biased", HOLD, name="digits-biased", metrics=[
        SUCCESS, {"name": "class-8-share", "templateRef": {"name": "class-8-share"}, "min": 0.03, "window": "10s"}]))
    status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", f"{status}\n{mro.timeline()}"
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    assert checks["class-8-share"]["verdict"] == "Fail" and checks["class-8-share"]["value"] < 0.03, checks
    assert checks["success-rate"]["verdict"] == "Pass", checks
    assert candidate_5xx(e2e) == 0
    assert traffic(e2e.kube, e2e.namespace) == {"main": 100}
