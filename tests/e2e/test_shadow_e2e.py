"""Shadow rollouts end to end: real model servers, the local data plane's mirror, Prometheus and Locust.

A shadow candidate answers a copy of every live request and no user ever gets its answer: each Locust answer
names the version that produced it (``served_model_version``), and a watch on the SeldonDeployment records
every version of its predictors. The candidate is judged on its own errors, on its answers against the
stable's for the same requests (``shadow-agreement``, from the data plane's comparing mirror) and on the
drift of its predicted classes from the stable's.
"""

from __future__ import annotations

from testkit.prometheus import prom_value
from testkit.rollouts import LIVE_ANALYSIS, model_rollout
from testkit.seldon import CANDIDATE, traffic
from tests.e2e.conftest import E2E, answers, traffic_and_operator

STABLE_VERSION = "1.0.0"
# On the digits images 2.0.0 names the class 1.0.0 names in 90.5% of rows, 2.2.0-biased (never an 8) in 83.1%.
SHADOW_METRICS = [
    {"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "10s"},
    {"name": "agreement", "template": "shadow-agreement", "min": 0.87, "confidence": 0.95, "window": "10s"},
    {"name": "drift", "template": "prediction-distribution", "compare": {"maxPSI": 0.2}, "window": "10s"},
]


def shadow_rollout(version: str, steps: list[dict[str, object]] | None = None) -> dict[str, object]:
    obj = model_rollout(version, analysis=LIVE_ANALYSIS, name=f"digits-shadow-{version.split('-')[-1]}",
                        metrics=SHADOW_METRICS)
    body: dict[str, object] = {"mirrorPercent": 100, "duration": "20s"}
    if steps is not None:
        body["steps"] = steps
    obj["spec"]["strategy"] = {"shadow": body}  # type: ignore[index]
    return obj


def mirrored_predictions(e2e: E2E) -> float:
    query = (f'sum(seldon_api_executor_server_requests_seconds_count{{namespace="{e2e.namespace}",'
             f'predictor_name="{CANDIDATE}",service="predictions"}}) or vector(0)')
    return prom_value(e2e.prometheus_url, query) or 0.0


def test_a_biased_shadow_is_caught_by_its_answers_and_no_user_ever_gets_one(e2e: E2E) -> None:
    record, locust, watch = traffic_and_operator(e2e, seconds=150)
    mro = e2e.start_rollout(shadow_rollout("2.2.0-biased", [{"setWeight": 20}]))
    status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=120)
    watch.stop()
    locust.stop()
    assert status["phase"] == "RolledBack", f"{status}\n{mro.timeline()}"
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    failed = {name for name, c in checks.items() if c["verdict"] == "Fail"}
    assert failed & {"agreement", "drift"}, checks  # caught by what it answered, not by errors
    # success-rate, a threshold on a point, waits for a full window: the decisive answers come first.
    assert checks.get("success-rate", {}).get("verdict") != "Fail", checks
    assert all(c["weight"] == 0 for c in checks.values()), checks  # every check was on the shadow
    # The shadow served: it answered mirrored predictions (counted by its own executor)...
    assert mirrored_predictions(e2e) > 50
    # ...and never a user: in every version of the deployment it was a shadow, and no answer named it.
    candidate_versions = [next(p for p in v if p["name"] == CANDIDATE) for v in watch.versions
                          if any(p["name"] == CANDIDATE for p in v)]
    assert candidate_versions and all(p.get("shadow") is True for p in candidate_versions), watch.history
    served = answers(record)
    assert len(served) > 100 and {version for _, version in served} == {STABLE_VERSION}
    assert traffic(e2e.kube, e2e.namespace) == {"main": 100}
    assert locust.stats().failures == 0, locust.failures()


def test_a_good_shadow_passes_and_goes_on_into_its_canary_steps(e2e: E2E) -> None:
    record, locust, watch = traffic_and_operator(e2e, seconds=180)
    # 40% is earned at 20% by every metric that measures a live candidate (agreement only measures a shadow).
    mro = e2e.start_rollout(shadow_rollout("2.0.0", [{"setWeight": 20}, {"setWeight": 40}, {"pause": {}}]))
    status = mro.wait_phase("Paused", "RolledBack", "Succeeded", "Failed", timeout=150)
    watch.stop()
    locust.stop()
    assert status["phase"] == "Paused" and status["candidateWeight"] == 40, f"{status}\n{mro.timeline()}"
    (passed,) = mro.events("ShadowPassed")
    assert "agreement" in passed["message"] and "drift" in passed["message"], passed
    # Users got 2.0.0's answers only once it went live: after the first version of the deployment in which
    # the candidate was no shadow (1 s for the data plane's and this watch's deliveries of one write).
    live_at = next(at for at, v in zip(watch.seen_at, watch.versions, strict=True)
                   if any(p["name"] == CANDIDATE and not p.get("shadow") and p.get("traffic") for p in v))
    served = answers(record)
    by_candidate = [sent for sent, version in served if version == "2.0.0"]
    assert by_candidate and min(by_candidate) >= live_at - 1.0, (min(by_candidate), live_at)
    shadow_phase = [version for sent, version in served if sent < live_at - 1.0]
    assert len(shadow_phase) > 100 and set(shadow_phase) == {STABLE_VERSION}
    assert traffic(e2e.kube, e2e.namespace) == {"main": 60, CANDIDATE: 40}
    assert locust.stats().failures == 0, locust.failures()
