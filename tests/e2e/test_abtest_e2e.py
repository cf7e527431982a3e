"""A/B tests end to end: real model servers, the local data plane's split, accuracy from Locust's feedback.

Both versions serve live users at the declared split; each Locust answer names the version that produced it,
and Locust sends the true label back for most of them, so ``model-accuracy`` (the builtin template, keyed on
the version that answered) compares the candidate's accuracy with the stable's over the same test. On the
digits images 2.0.0 is right in 97% of rows and 1.0.0 in 88%; 2.1.0-degraded in 81%.
"""

from __future__ import annotations

from typing import Any

from testkit.rollouts import LIVE_ANALYSIS, model_rollout
from testkit.seldon import CANDIDATE, traffic
from tests.e2e.conftest import E2E, answers, traffic_and_operator

STABLE_VERSION = "1.0.0"
AB_METRICS = [
    {"name": "accuracy", "template": "model-accuracy", "compare": {"tolerance": 0.01}},
    {"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "10s"},
]


def ab_rollout(version: str, duration: str) -> dict[str, Any]:
    obj = model_rollout(version, analysis=LIVE_ANALYSIS, name=f"digits-ab-{version.split('-')[-1]}",
                        metrics=AB_METRICS)
    obj["spec"]["strategy"] = {"abTest": {"weight": 50, "duration": duration, "primary": "accuracy"}}
    return obj


def model_uri(e2e: E2E) -> str:
    return str(e2e.kube.get("sdep", "digits", e2e.namespace)["spec"]["predictors"][0]["graph"]["modelUri"])


def test_an_ab_test_that_2_0_0_wins_on_accuracy_makes_it_the_stable_model(e2e: E2E) -> None:
    record, locust, watch = traffic_and_operator(e2e, seconds=150, feedback_share=0.7)
    mro = e2e.start_rollout(ab_rollout("2.0.0", "25s"))
    status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=120)
    watch.stop()
    locust.stop()
    assert status["phase"] == "Succeeded", f"{status}\n{mro.timeline()}"
    assert model_uri(e2e).endswith("/2.0.0") and traffic(e2e.kube, e2e.namespace) == {"main": 100}
    # The decision read the whole test (not a window of it) and says why, with both arms' samples.
    primary = next(c for c in status["analysis"]["lastChecks"] if c["metric"] == "accuracy")
    assert primary["better"] is True and not primary.get("interim"), primary
    assert int(primary["window"].rstrip("s")) >= 25, primary
    (won,) = mro.events("ABTestCandidateWon")
    assert "2.0.0 beats 1.0.0" in won["message"] and "better by" in won["message"], won
    assert "CI [" in won["message"] and "n=" in won["message"], won
    # Users got both models' answers at the declared split while the test ran: from the first version of the
    # deployment at 50/50 to the first one after it (1 s either side for the deliveries of one write).
    split = [at for at, shares in zip(watch.seen_at, watch.history, strict=True)
             if shares.get(CANDIDATE) == 50 and shares.get("main") == 50]
    assert split, watch.history
    during = [version for sent, version in answers(record) if split[0] + 1 <= sent <= split[-1] - 1]
    assert len(during) > 200, len(during)
    share = during.count("2.0.0") / len(during)
    assert set(during) == {STABLE_VERSION, "2.0.0"} and 0.35 < share < 0.65, (share, len(during))
    assert locust.stats().failures == 0, locust.failures()
    print(f"\nA/B won: {won['message']}")


def test_an_ab_test_of_a_less_accurate_model_removes_it_long_before_the_test_ends(e2e: E2E) -> None:
    record, locust, watch = traffic_and_operator(e2e, seconds=180, feedback_share=0.7)
    mro = e2e.start_rollout(ab_rollout("2.1.0-degraded", "10m"))
    status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=150)  # 10 minutes were declared
    watch.stop()
    locust.stop()
    assert status["phase"] == "RolledBack", f"{status}\n{mro.timeline()}"
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    assert checks["accuracy"]["verdict"] == "Fail" and not checks["accuracy"].get("better"), checks
    assert checks["accuracy"]["value"] < checks["accuracy"]["baseline"], checks
    # It answered fine, it answered wrong (success-rate, a point threshold, may not have had its full window yet).
    assert checks.get("success-rate", {}).get("verdict") != "Fail", checks
    assert "accuracy" in status["message"], status["message"]
    assert model_uri(e2e).endswith(f"/{STABLE_VERSION}") and traffic(e2e.kube, e2e.namespace) == {"main": 100}
    # The candidate did serve users at the split before it was removed, and nobody after.
    assert watch.max_share(CANDIDATE) == 50, watch.history
    served = answers(record)
    assert any(version == "2.1.0-degraded" for _, version in served), len(served)
    assert locust.stats().failures == 0, locust.failures()
    print(f"\nA/B removed the worse candidate: {status['message']}\n{mro.timeline()}")
