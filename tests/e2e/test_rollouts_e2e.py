"""Whole rollouts with everything real: kube-apiserver, the data plane's model servers, Prometheus,
Locust traffic through the ingress and the operator as a process. Faults come from the model servers'
own admin API (testkit.faults), injected on the candidate as soon as it is ready."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from localcluster.prometheus import PrometheusServer, dataplane_jobs
from testkit.recorder import TrafficWatch
from testkit.rollouts import LIVE_ANALYSIS, model_rollout, model_uri
from testkit.seldon import CANDIDATE, traffic
from testkit.waiting import wait_for
from tests.e2e.conftest import E2E, FEEDBACK_ACCURACY, analysis_template

INTERVAL_S = 3.0
# Held at 50% by an indefinite pause: only analysis can end these rollouts (roll back), or a promotion.
HOLD = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
GOOD_STEPS = [{"setWeight": 30}, {"pause": {"duration": "9s"}}, {"setWeight": 60}, {"analysis": {}},
              {"setWeight": 100}]


def assert_rolled_back(e2e: E2E, status: dict[str, Any], failed_metric: str) -> None:
    assert status["phase"] == "RolledBack", status
    assert status["candidateWeight"] == 0
    assert traffic(e2e.kube, e2e.namespace) == {"main": 100}
    failed = [c for c in status["analysis"]["lastChecks"] if c["verdict"] == "Fail"]
    assert failed_metric in {c["metric"] for c in failed}, status["analysis"]
    history = status["history"][-1]
    assert history["result"] == "RolledBack" and history["version"] == status["candidateVersion"]


def test_good_candidate_is_promoted(e2e: E2E) -> None:
    locust = e2e.start_locust(users=4)
    e2e.wait_traffic()
    e2e.start_operator()
    e2e.kube.create(analysis_template("feedback-accuracy", FEEDBACK_ACCURACY), e2e.namespace)
    mro = e2e.start_rollout(model_rollout("2.0.0", GOOD_STEPS, analysis=LIVE_ANALYSIS, metrics=[
        {"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "8s"},
        {"name": "latency-p99", "template": "request-duration-p99", "max": 0.5, "window": "8s"},
        {"name": "accuracy", "templateRef": {"name": "feedback-accuracy"}, "min": 0.9, "window": "10s"}]))

    status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=120)
    assert status["phase"] == "Succeeded", f"{status}\n{mro.timeline()}"
    assert status["stableVersion"] == "2.0.0" and status["candidateWeight"] == 0
    assert traffic(e2e.kube, e2e.namespace) == {"main": 100}
    assert all(c["verdict"] == "Pass" for c in status["analysis"]["lastChecks"]), status["analysis"]
    assert 60 in {s.weight for s in mro.samples}, mro.timeline()
    accuracy = next(c for c in status["analysis"]["lastChecks"] if c["metric"] == "accuracy")
    assert accuracy["value"] >= 0.9, accuracy
    # The data plane now runs main on 2.0.0 and nothing else: the candidate's process is gone.
    wanted = [("main", model_uri("2.0.0"), True)]
    wait_for(lambda: [(s["predictor"], s["modelUri"], s["ready"]) for s in e2e.servers()] == wanted,
             f"the data plane to run only {wanted} after the promotion", timeout=60)
    assert not e2e.servers(CANDIDATE)
    # Users saw (almost) no failures: while the canary ran (the operator's part) and through the
    # promotion, when the data plane swaps main's model (its part).
    locust.stop()
    stats = locust.stats()
    assert stats.requests > 500, stats
    started, promoting = mro.samples[0].wall, mro.first(lambda s: s.phase in ("Promoting", "Succeeded"))
    assert promoting is not None
    canary = locust.counts_between(started, promoting.wall - 1.0)
    assert canary[0] > 200 and canary[1] <= 0.01 * canary[0], f"canary: {canary[1]} of {canary[0]} failed"
    assert stats.failure_share <= 0.01, (
        f"{stats.failures} of {stats.requests} requests failed, {canary[1]} of them before the promotion: "
        f"{locust.failures()}")


def test_candidate_with_errors_is_rolled_back(e2e: E2E) -> None:
    e2e.start_locust(users=4)
    e2e.wait_traffic()
    e2e.start_operator()
    armer = e2e.arm_faults(error_rate=0.05, error_status=503)
    mro = e2e.start_rollout(model_rollout("2.0.0", HOLD, analysis=LIVE_ANALYSIS, name="digits-errors",
                                          metrics=[{"name": "success-rate", "template": "request-success-rate",
                                                    "min": 0.99, "window": "10s"}]))
    armer.wait_injected(timeout=60)
    status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=90)
    assert_rolled_back(e2e, status, "success-rate")
    first_fail = mro.first(lambda s: s.verdicts.get("success-rate") == "Fail")
    rolled_back = mro.first(lambda s: s.phase == "RolledBack")
    assert first_fail and rolled_back, mro.timeline()
    # failureLimit (2) consecutive failures: rolled back within failureLimit + 1 intervals of the first.
    took = rolled_back.t - first_fail.t
    assert took <= (2 + 1) * INTERVAL_S + 1.0, f"rollback took {took:.1f}s after the first failed check\n" \
                                               f"{mro.timeline()}"
    assert "below min 0.99" in status["message"] or "success-rate" in status["message"], status["message"]


def test_candidate_with_added_latency_is_rolled_back(e2e: E2E) -> None:
    e2e.start_locust(users=4)
    e2e.wait_traffic()
    e2e.start_operator()
    armer = e2e.arm_faults(latency_ms=200)
    mro = e2e.start_rollout(model_rollout("2.0.0", HOLD, analysis=LIVE_ANALYSIS, name="digits-slow", minRequests=10,
                                          metrics=[
            {"name": "latency-p90", "template": "request-duration-p90", "max": 0.15, "window": "8s"},
            {"name": "success-rate", "template": "request-success-rate", "min": 0.95, "window": "8s"}]))
    injected = armer.wait_injected(timeout=60)
    status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=90)
    assert_rolled_back(e2e, status, "latency-p90")
    slow = next(c for c in status["analysis"]["lastChecks"] if c["metric"] == "latency-p90")
    assert slow["value"] >= 0.15, slow
    rolled_back = mro.first(lambda s: s.phase == "RolledBack")
    assert rolled_back is not None
    print(f"latency fault to rollback: {rolled_back.t - injected:.1f}s ({(rolled_back.t - injected) / INTERVAL_S:.1f}"
          " intervals)")


def test_candidate_without_traffic_is_never_promoted(e2e: E2E) -> None:
    # No Locust: the candidate gets no requests, every check is inconclusive, and no data is never a pass.
    e2e.start_operator()
    steps = [{"setWeight": 50}, {"pause": {"duration": "3s"}}, {"setWeight": 100}]
    mro = e2e.start_rollout(model_rollout("2.0.0", steps, analysis=LIVE_ANALYSIS, inconclusiveLimit=3))
    status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=60)
    assert status["phase"] == "RolledBack", f"{status}\n{mro.timeline()}"
    assert "Succeeded" not in mro.phases() and "Promoting" not in mro.phases(), mro.timeline()
    assert status["analysis"]["consecutiveInconclusive"] >= 3
    assert all(c["verdict"] == "Inconclusive" for c in status["analysis"]["lastChecks"])
    assert "no data is never a pass" in status["message"]
    assert traffic(e2e.kube, e2e.namespace) == {"main": 100}
    sdep = e2e.kube.get("sdep", "digits", e2e.namespace)
    assert sdep["spec"]["predictors"][0]["graph"]["modelUri"] == model_uri("1.0.0")


def test_operator_killed_mid_rollout_finishes_it(e2e: E2E) -> None:
    e2e.start_locust(users=4)
    e2e.wait_traffic()
    operator = e2e.start_operator()
    steps = [{"setWeight": 20}, {"pause": {"duration": "6s"}}, {"setWeight": 50}, {"pause": {"duration": "6s"}},
             {"setWeight": 100}]
    mro = e2e.start_rollout(model_rollout("2.0.0", steps, analysis=LIVE_ANALYSIS))
    before = mro.wait(lambda s: s.get("phase") == "Progressing" and s.get("candidateWeight") == 20
                      and s.get("stepIndex") == 1, "candidate at 20% in the pause step", timeout=60)
    operator.kill()  # SIGKILL: no cleanup, state only in status
    # Nobody runs the rollout now: it stays where it was.
    weight_while_down = traffic(e2e.kube, e2e.namespace).get(CANDIDATE)
    assert weight_while_down == 20
    operator.start()
    status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=120)
    assert status["phase"] == "Succeeded", f"{status}\n{mro.timeline()}"
    assert status["revision"] == before["revision"], "the restarted operator started a new revision"
    assert [h["result"] for h in status.get("history", [])] == ["Succeeded"], status.get("history")
    steps_seen = [s.step for s in mro.samples if s.revision == before["revision"]]
    assert steps_seen == sorted(steps_seen), f"stepIndex went back: {steps_seen}\n{mro.timeline()}"
    assert traffic(e2e.kube, e2e.namespace) == {"main": 100}
    sdep = e2e.kube.get("sdep", "digits", e2e.namespace)
    assert sdep["spec"]["predictors"][0]["graph"]["modelUri"] == model_uri("2.0.0")


def test_prometheus_outage_blocks_promotion(e2e: E2E, tmp_path: Path) -> None:
    """With its Prometheus gone, the operator has no data: it must not promote, and rolls back after
    inconclusiveLimit checks (engine: a provider error is inconclusive, never a pass)."""
    private = PrometheusServer(tmp_path / "prometheus", dataplane_jobs(f"127.0.0.1:{e2e.services.ingress_port}"),
                               scrape_interval="1s").start()
    try:
        wait_for(lambda: private.query(f'up{{job="seldon-executors",namespace="{e2e.namespace}"}} == 1'),
                 "the private Prometheus to scrape", timeout=30)
        e2e.start_locust(users=4)
        e2e.wait_traffic()
        e2e.start_operator(prometheus_url=private.url)
        mro = e2e.start_rollout(model_rollout("2.0.0", HOLD, analysis=LIVE_ANALYSIS, name="digits-promdown",
                                              inconclusiveLimit=4))
        mro.wait(lambda s: s.get("candidateWeight") == 50 and s.get("phase") == "Paused"
                 and all(c["verdict"] == "Pass" for c in (s.get("analysis") or {}).get("lastChecks", []))
                 and bool((s.get("analysis") or {}).get("lastChecks")),
                 "candidate at 50% with passing checks", timeout=60)
        watch = TrafficWatch(e2e.kube, e2e.namespace, "digits").start()
        private.stop()
        stopped = time.monotonic()
        mro.wait(lambda s: any(c["verdict"] == "Inconclusive" for c in s["analysis"]["lastChecks"]),
                 "an inconclusive check with Prometheus down", timeout=30)
        # Ask to go on: resume ends the pause and the last setWeight(100) step would end in a promotion.
        mro_name = mro.name
        e2e.kube.run("annotate", "--overwrite", "mro", mro_name, "-n", e2e.namespace,
                     "modelrollout.dev/action=resume")
        status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=60)
        took = time.monotonic() - stopped
        mro.wait(lambda s: s.get("candidateWeight") == 0, "the candidate's weight back to 0", timeout=30)
        watch.stop()
        assert status["phase"] == "RolledBack", f"{status}\n{mro.timeline()}"
        # Every version of the deployment while Prometheus was down: the resume never raised the weight.
        assert watch.max_share(CANDIDATE) == 50, watch.history
        assert "Succeeded" not in mro.phases() and "Promoting" not in mro.phases(), mro.timeline()
        assert "inconclusive" in status["message"] and "no data is never a pass" in status["message"], status
        assert status["analysis"]["consecutiveInconclusive"] >= 4
        assert traffic(e2e.kube, e2e.namespace) == {"main": 100}
        sdep = e2e.kube.get("sdep", "digits", e2e.namespace)
        assert sdep["spec"]["predictors"][0]["graph"]["modelUri"] == model_uri("1.0.0")
        # inconclusiveLimit (4) checks one interval apart, plus the one that was due and some slack.
        assert took <= (4 + 2) * INTERVAL_S + 3, f"rollback {took:.1f}s after the outage\n{mro.timeline()}"
    finally:
        private.stop()


def test_a_healthy_candidate_is_promoted_under_a_15s_scrape(e2e: E2E, tmp_path: Path) -> None:
    """A Prometheus scraping every 15s (kube-prometheus-stack scrapes every 30s by default): the default
    window holds 4 scrapes, so a healthy candidate gets real verdicts, not empty ones and a rollback."""
    slow = PrometheusServer(tmp_path / "prometheus", dataplane_jobs(f"127.0.0.1:{e2e.services.ingress_port}"),
                            scrape_interval="15s").start()
    try:
        wait_for(lambda: slow.query(f'up{{job="seldon-executors",namespace="{e2e.namespace}"}} == 1'),
                 "the 15s Prometheus to scrape", timeout=60)
        e2e.start_locust(users=4, duration_s=300)
        e2e.wait_traffic()
        e2e.start_operator(prometheus_url=slow.url, extra=("--scrape-interval", "15s"))
        mro = e2e.start_rollout(model_rollout("2.0.0", [{"setWeight": 50}], analysis=LIVE_ANALYSIS, interval="15s",
                                              inconclusiveLimit=2, metrics=[
            {"name": "success-rate", "template": "request-success-rate", "min": 0.99},
            {"name": "latency-p99", "template": "request-duration-p99", "max": 0.5}]))
        status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=240)
        assert status["phase"] == "Succeeded", f"{status}\n{mro.timeline()}"
        checks = status["analysis"]["lastChecks"]
        assert {c["metric"] for c in checks} == {"success-rate", "latency-p99"}
        assert all(c["verdict"] == "Pass" and c["window"] == "1m" for c in checks), checks  # 4 scrapes of 15s
    finally:
        slow.stop()
