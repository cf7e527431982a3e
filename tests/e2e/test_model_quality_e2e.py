"""Model quality beyond errors and latency: candidates that answer every request fine but answer wrong.

AnalysisTemplates query the model servers' own metrics: accuracy from ground-truth feedback
(`feedback_outcomes_total{served_model_version, outcome}`: each answer names the version that produced it and
Locust sends it back with the true labels; whichever predictor the feedback reaches counts it under that
version, so the accuracy of the candidate's model holds whether feedback goes to the predictor that answered
or, as on Seldon Core v1, by traffic weight) and the share of predictions of one class
(`predictions_total{class}`)."""

from __future__ import annotations

import json
from pathlib import Path

from testkit.prometheus import prom_value
from testkit.rollouts import LIVE_ANALYSIS, model_rollout
from testkit.seldon import CANDIDATE, traffic
from tests.e2e.conftest import CLASS_8_SHARE, E2E, FEEDBACK_ACCURACY, analysis_template

REPO = Path(__file__).resolve().parents[2]
HOLD = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
SUCCESS = {"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "10s"}
ACCURACY = {"name": "accuracy", "templateRef": {"name": "feedback-accuracy"}, "min": 0.9, "window": "10s"}


def candidate_5xx(e2e: E2E) -> float:
    query = (f'sum(seldon_api_executor_server_requests_seconds_count{{namespace="{e2e.namespace}",'
             f'predictor_name="{CANDIDATE}",code=~"5.."}}) or vector(0)')
    return prom_value(e2e.prometheus_url, query) or 0.0


def test_degraded_candidate_is_rolled_back_on_feedback_accuracy(e2e: E2E) -> None:
    locust = e2e.start_locust(users=4, FEEDBACK_SHARE="0.7")
    e2e.wait_traffic()
    e2e.start_operator()
    e2e.kube.create(analysis_template("feedback-accuracy", FEEDBACK_ACCURACY), e2e.namespace)
    mro = e2e.start_rollout(model_rollout("2.1.0-degraded", HOLD, analysis=LIVE_ANALYSIS, name="digits-degraded",
                                          metrics=[SUCCESS, ACCURACY]))
    status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", f"{status}\n{mro.timeline()}"
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    assert checks["accuracy"]["verdict"] == "Fail" and checks["accuracy"]["value"] < 0.9, checks
    assert 'served_model_version="2.1.0-degraded"' in checks["accuracy"]["query"], checks["accuracy"]
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
    mro = e2e.start_rollout(model_rollout("2.2.0-biased", HOLD, analysis=LIVE_ANALYSIS, name="digits-biased",
                                          metrics=[SUCCESS, {"name": "class-8-share", "min": 0.03, "window": "10s",
                                                             "templateRef": {"name": "class-8-share"}}]))
    status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=90)
    assert status["phase"] == "RolledBack", f"{status}\n{mro.timeline()}"
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    assert checks["class-8-share"]["verdict"] == "Fail" and checks["class-8-share"]["value"] < 0.03, checks
    assert checks["success-rate"]["verdict"] == "Pass", checks
    assert candidate_5xx(e2e) == 0
    assert traffic(e2e.kube, e2e.namespace) == {"main": 100}


def test_the_candidates_accuracy_at_10_percent_is_its_model_cards_with_feedback_routed_by_weight(e2e: E2E) -> None:
    """At 10% most of the candidate's feedback lands on stable's servers (feedback goes by weight, as on
    Seldon v1); counted by the version that answered, accuracy still measures the candidate's model. Locust
    sends only the model card's held-out rows, so the expected value is the card's accuracy."""
    card = json.loads((REPO / "models" / "digits" / "2.1.0-degraded" / "model-card.json").read_text())
    expected = card["metrics"]["accuracy"]  # 0.81 on the held-out rows; stable 1.0.0 has 0.88 there
    e2e.start_locust(users=4, duration_s=240, FEEDBACK_SHARE="1.0", ROWS="heldout")
    e2e.wait_traffic()
    e2e.start_operator()
    e2e.kube.create(analysis_template("feedback-accuracy", FEEDBACK_ACCURACY), e2e.namespace)
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]
    mro = e2e.start_rollout(model_rollout("2.1.0-degraded", steps, analysis=LIVE_ANALYSIS, name="digits-accuracy",
                                          interval="20s", minRequests=50, inconclusiveLimit=10,
                                          metrics=[{**ACCURACY, "min": 0.0, "window": "60s"}]))
    status = mro.wait(lambda s: any(c["metric"] == "accuracy" and c["value"] is not None
                                    for c in (s.get("analysis") or {}).get("lastChecks", [])),
                      "a measured accuracy at 10%", timeout=150)
    assert status["candidateWeight"] == 10, status
    measured = next(c for c in status["analysis"]["lastChecks"] if c["metric"] == "accuracy")["value"]
    # ~900 outcomes in 60s: one standard error is ~0.013; 0.04 is three of them, and half the distance to
    # what a mix with the stable model's feedback would read.
    assert abs(measured - expected) <= 0.04, (measured, expected)
