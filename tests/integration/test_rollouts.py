"""Whole rollouts against the real kube-apiserver and a real Prometheus scraping a controlled exporter."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from localcluster.executor_exporter import ExecutorExporter, Traffic
from localcluster.prometheus import PrometheusServer
from testkit.kube import Kube
from testkit.processes import OperatorProcess
from testkit.recorder import TrafficWatch
from testkit.rollouts import EXPORTER_ANALYSIS, model_rollout, model_uri
from testkit.waiting import wait_for
from tests.integration.conftest import Start

GOOD = Traffic(rps=40, error_ratio=0.0, latency_s=0.02)
STEPS = [{"setWeight": 20}, {"pause": {"duration": "3s"}}, {"setWeight": 60}, {"analysis": {}},
         {"setWeight": 100}]


def candidate_serves(exporter: ExecutorExporter, namespace: str, traffic: Traffic) -> None:
    exporter.set(namespace, "digits", "main-candidate", traffic)
    exporter.set(namespace, "digits", "main", GOOD)


def test_good_candidate_is_promoted(exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any],
                                    operator: OperatorProcess, start_rollout: Start, cluster: Kube) -> None:
    candidate_serves(exporter, namespace, GOOD)
    rollout = start_rollout(model_rollout(steps=STEPS, analysis=EXPORTER_ANALYSIS))
    rollout.wait(lambda s: s.get("candidateWeight") == 20, "candidate at 20%")
    assert rollout.traffic() == {"main": 80, "main-candidate": 20}
    status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=120)
    assert status["phase"] == "Succeeded", status
    assert status["stableVersion"] == "2.0.0" and status["candidateWeight"] == 0
    assert rollout.traffic() == {"main": 100}
    sdep = cluster.get("sdep", "digits", namespace)
    assert sdep["spec"]["predictors"][0]["graph"]["modelUri"] == "file:///models/digits/2.0.0"
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    assert checks["success-rate"]["verdict"] == "Pass" and checks["success-rate"]["value"] >= 0.95
    assert status["history"][-1]["result"] == "Succeeded"
    promoted = wait_for(lambda: rollout.events("Promoted"), "a Promoted Event")
    assert promoted[-1]["type"] == "Normal" and "2.0.0" in promoted[-1]["message"]


def test_failing_success_rate_rolls_back_within_failure_limit(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, Traffic(rps=40, error_ratio=0.3, latency_s=0.02))
    rollout = start_rollout(model_rollout(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}],
                                          analysis=EXPORTER_ANALYSIS))
    rollout.wait(lambda s: s.get("candidateWeight") == 20, "candidate at 20%")
    shifted = time.monotonic()
    status = rollout.wait_phase("RolledBack", "Succeeded", timeout=60)
    took = time.monotonic() - shifted
    assert status["phase"] == "RolledBack" and status["candidateWeight"] == 0
    # failureLimit (2) failed checks, one interval (2s) apart, plus one interval of slack for data to arrive.
    assert took <= (2 + 1) * 2 + 4, f"rollback took {took:.1f}s"
    assert rollout.traffic() == {"main": 100}
    failed = [c for c in status["analysis"]["lastChecks"] if c["verdict"] == "Fail"]
    assert failed and failed[0]["metric"] == "success-rate"
    assert "below min 0.95" in failed[0]["message"] and "4s" in failed[0]["message"]
    events = wait_for(lambda: rollout.events("RolledBack"), "a RolledBack Event")  # posted after the status write
    assert "success-rate" in events[-1]["message"] and events[-1]["type"] == "Warning"


def test_no_data_rolls_back_after_inconclusive_limit(
        namespace: str, deployment: dict[str, Any], operator: OperatorProcess, start_rollout: Start) -> None:
    # The exporter has no series for this namespace's candidate: every check is inconclusive.
    rollout = start_rollout(model_rollout(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}],
                                          analysis=EXPORTER_ANALYSIS))
    status = rollout.wait_phase("RolledBack", "Succeeded", timeout=60)
    assert status["phase"] == "RolledBack"
    assert status["analysis"]["consecutiveInconclusive"] >= 3
    assert all(c["verdict"] == "Inconclusive" for c in status["analysis"]["lastChecks"])
    assert "no data is never a pass" in status["message"]
    events = rollout.events("AnalysisInconclusive")
    assert events and events[-1]["type"] == "Warning"
    assert rollout.traffic() == {"main": 100}


def test_manual_pause_resume_promote(exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any],
                                     operator: OperatorProcess, start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    rollout = start_rollout(model_rollout(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}},
                                                 {"setWeight": 100}], analysis=EXPORTER_ANALYSIS))
    rollout.wait_phase("Paused")
    assert rollout.status()["candidateWeight"] == 20
    rollout.annotate("resume")
    rollout.wait(lambda s: s.get("candidateWeight") == 50 and s.get("phase") == "Paused", "paused at 50%")
    assert rollout.traffic() == {"main": 50, "main-candidate": 50}
    rollout.wait(lambda s: any(c["verdict"] == "Pass" for c in s["analysis"].get("lastChecks", [])),
                 "a passing analysis")
    rollout.annotate("promote")
    status = rollout.wait_phase("Succeeded", "RolledBack", "Aborted")
    assert status["phase"] == "Succeeded" and rollout.traffic() == {"main": 100}
    annotations = rollout.kube.get("mro", rollout.name, namespace)["metadata"].get("annotations") or {}
    assert "modelrollout.dev/action" not in annotations  # handled and cleared


def test_manual_pause_then_abort(exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any],
                                 operator: OperatorProcess, start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    rollout = start_rollout(model_rollout(steps=[{"setWeight": 30}, {"pause": {"duration": "1h"}}, {"setWeight": 100}],
                                          analysis=EXPORTER_ANALYSIS))
    rollout.wait(lambda s: s.get("candidateWeight") == 30, "candidate at 30%")
    rollout.annotate("pause")
    rollout.wait_phase("Paused")
    assert rollout.traffic() == {"main": 70, "main-candidate": 30}
    rollout.annotate("abort")
    status = rollout.wait_phase("Aborted")
    assert status["candidateWeight"] == 0 and rollout.traffic() == {"main": 100}
    assert status["history"][-1]["result"] == "Aborted"
    aborted = wait_for(lambda: rollout.events("Aborted"), "an Aborted Event")
    assert aborted[-1]["type"] == "Warning" and "on request" in aborted[-1]["message"]


def test_operator_killed_mid_rollout_continues_from_status(
        exporter: ExecutorExporter, cluster: Kube, namespace: str, deployment: dict[str, Any],
        prometheus: PrometheusServer, operator: OperatorProcess, start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    rollout = start_rollout(model_rollout(steps=[{"setWeight": 20}, {"pause": {"duration": "4s"}}, {"setWeight": 50},
                                                 {"pause": {"duration": "6s"}}, {"setWeight": 100}],
                                          analysis=EXPORTER_ANALYSIS))
    before = rollout.wait(lambda s: s.get("candidateWeight") == 50, "candidate at 50%")
    operator.kill()
    assert rollout.traffic() == {"main": 50, "main-candidate": 50}  # nothing moves while it is down
    operator.start()
    seen_steps = [before["stepIndex"]]
    status = rollout.wait(lambda s: (seen_steps.append(s.get("stepIndex", 0)) or True) and
                          s.get("phase") in {"Succeeded", "RolledBack"}, "the restarted operator to finish",
                          timeout=60)
    assert status["phase"] == "Succeeded", status
    assert status["revision"] == before["revision"]  # the same rollout continued, not a new one
    assert seen_steps == sorted(seen_steps), f"went back a step after the restart: {seen_steps}"


def test_concurrent_edit_of_the_deployment_is_kept(
        exporter: ExecutorExporter, cluster: Kube, namespace: str, deployment: dict[str, Any],
        operator: OperatorProcess, start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    rollout = start_rollout(model_rollout(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}],
                                          analysis=EXPORTER_ANALYSIS))
    rollout.wait_phase("Paused")
    # Someone else edits the deployment while the rollout owns its traffic.
    cluster.run("patch", "sdep", "digits", "-n", namespace, "--type=json", "-p",
                '[{"op": "add", "path": "/spec/annotations", "value": {"team": "vision"}},'
                ' {"op": "replace", "path": "/spec/predictors/0/replicas", "value": 3}]')
    rollout.annotate("resume")
    status = rollout.wait_phase("Succeeded", "RolledBack")
    assert status["phase"] == "Succeeded"
    sdep = cluster.get("sdep", "digits", namespace)
    assert sdep["spec"]["annotations"] == {"team": "vision"}
    assert sdep["spec"]["predictors"][0]["replicas"] == 3
    assert sdep["spec"]["predictors"][0]["graph"]["modelUri"] == "file:///models/digits/2.0.0"


def test_prometheus_unreachable_never_moves_traffic_further(
        exporter: ExecutorExporter, cluster: Kube, namespace: str, deployment: dict[str, Any], tmp_path: Path,
        start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    down = "http://127.0.0.1:9"  # nothing listens on the discard port
    operator = OperatorProcess(cluster, tmp_path / "operator.log", extra_args=(
        "--namespace", namespace, "--prometheus-url", down)).start()
    watch = TrafficWatch(cluster, namespace, "digits").start()
    try:
        obj = model_rollout(steps=[{"setWeight": 10}, {"pause": {"duration": "2s"}}, {"setWeight": 100}],
                            analysis=EXPORTER_ANALYSIS, inconclusiveLimit=3)
        rollout = start_rollout(obj)
        rollout.wait(lambda s: s.get("candidateWeight") == 10, "candidate at 10%")
        rollout.annotate("resume")  # a person pushing on while Prometheus is down changes nothing either
        status = rollout.wait_phase("RolledBack", "Succeeded", timeout=60)
        assert status["phase"] == "RolledBack"
        rollout.wait(lambda s: s.get("candidateWeight") == 0, "candidate weight 0")
        assert rollout.traffic() == {"main": 100}
    finally:
        watch.stop()
        operator.stop()
    assert watch.max_share("main-candidate") == 10, watch.history  # never above 10% while blind
    messages = " ".join(c["message"] for c in status["analysis"]["lastChecks"])
    assert "127.0.0.1:9" in messages and "inconclusive" in messages


def test_bad_query_and_missing_template_are_reported(
        exporter: ExecutorExporter, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    obj = model_rollout(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}],
                        analysis=EXPORTER_ANALYSIS, metrics=[
            {"name": "broken", "query": 'sum(rate(x{predictor_name="{{candidate}}"}[{{interval}}])', "max": 1},
            {"name": "shared", "templateRef": {"name": "does-not-exist"}, "max": 1}])
    rollout = start_rollout(obj)
    status = rollout.wait(lambda s: len(s.get("analysis", {}).get("lastChecks", [])) == 2, "two checks")
    checks = {c["metric"]: c for c in status["analysis"]["lastChecks"]}
    assert checks["broken"]["verdict"] == "Inconclusive" and "PromQL" in checks["broken"]["message"]
    assert checks["shared"]["verdict"] == "Inconclusive" and "does-not-exist" in checks["shared"]["message"]
    final = rollout.wait_phase("RolledBack", "Succeeded", timeout=60)
    assert final["phase"] == "RolledBack"


def test_stable_predictor_missing_and_candidate_equal_to_stable(
        cluster: Kube, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start) -> None:
    missing = model_rollout(steps=[{"setWeight": 10}], analysis=EXPORTER_ANALYSIS, stable="blue")
    rollout = start_rollout(missing)
    status = rollout.wait(lambda s: any(c["reason"] == "StablePredictorNotFound" for c in s.get("conditions", [])),
                          "StablePredictorNotFound")
    assert status["candidateWeight"] == 0 and rollout.traffic() == {"main": 100}
    same = model_rollout(steps=[{"setWeight": 10}], analysis=EXPORTER_ANALYSIS,
                         candidate={"modelUri": model_uri("1.0.0")})
    same_rollout = start_rollout(same)
    failed = same_rollout.wait_phase("Failed")
    assert any(c["reason"] == "CandidateIsStable" for c in failed["conditions"])
    assert rollout.traffic() == {"main": 100}
    wait_for(lambda: same_rollout.events("CandidateIsStable"), "a CandidateIsStable event")


def test_a_finished_rollout_carries_no_finalizer(
        exporter: ExecutorExporter, cluster: Kube, namespace: str, deployment: dict[str, Any],
        operator: OperatorProcess, start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    rollout = start_rollout(model_rollout(steps=[{"setWeight": 50}, {"setWeight": 100}], analysis=EXPORTER_ANALYSIS))
    assert rollout.wait_phase("Succeeded", "RolledBack", timeout=90)["phase"] == "Succeeded"
    wait_for(lambda: not cluster.get("mro", rollout.name, namespace)["metadata"].get("finalizers"),
             "the finalizer to be released")


def test_a_prometheus_address_not_on_the_allow_list_is_refused_and_never_contacted(
        cluster: Kube, namespace: str, deployment: dict[str, Any], operator: OperatorProcess,
        start_rollout: Start) -> None:
    obj = model_rollout(steps=[{"setWeight": 10}, {"setWeight": 100}], analysis=EXPORTER_ANALYSIS,
                        prometheus={"address": "http://169.254.169.254:80"})
    rollout = start_rollout(obj)
    status = rollout.wait(lambda s: any(c["type"] == "SpecValid" and c["status"] == "False"
                                        for c in s.get("conditions", [])), "SpecValid=False")
    valid = next(c for c in status["conditions"] if c["type"] == "SpecValid")
    assert "169.254.169.254" in valid["message"] and "allowed Prometheus" in valid["message"]
    assert rollout.traffic() == {"main": 100}
    wait_for(lambda: rollout.events("InvalidSpec"), "an InvalidSpec event")


def test_a_second_rollout_on_the_same_stable_predictor_is_refused_and_never_writes(
        exporter: ExecutorExporter, cluster: Kube, namespace: str, deployment: dict[str, Any],
        operator: OperatorProcess, start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    first = start_rollout(model_rollout(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}],
                                        analysis=EXPORTER_ANALYSIS))
    first.wait_phase("Paused")
    second_obj = model_rollout("2.1.0-degraded", [{"setWeight": 50}, {"setWeight": 100}], analysis=EXPORTER_ANALYSIS,
                               candidate={"predictorName": "main-other"})
    second = start_rollout(second_obj)
    status = second.wait(lambda s: any(c["reason"] == "TargetOwnedByAnother" for c in s.get("conditions", [])),
                         "TargetOwnedByAnother")
    assert first.name in status["message"]
    assert first.traffic() == {"main": 80, "main-candidate": 20}  # untouched by the second rollout
    wait_for(lambda: second.events("TargetOwnedByAnother"), "a TargetOwnedByAnother Warning")
    first.annotate("abort")
    first.wait_phase("Aborted")
    second.wait(lambda s: s.get("candidateWeight") == 50, "the second rollout once the first ended")


def test_deleting_an_active_rollout_rolls_its_candidate_back_first(
        exporter: ExecutorExporter, cluster: Kube, namespace: str, deployment: dict[str, Any],
        operator: OperatorProcess, start_rollout: Start) -> None:
    candidate_serves(exporter, namespace, GOOD)
    rollout = start_rollout(model_rollout(steps=[{"setWeight": 30}, {"pause": {}}, {"setWeight": 100}],
                                          analysis=EXPORTER_ANALYSIS))
    rollout.wait_phase("Paused")
    obj = cluster.get("mro", rollout.name, namespace)
    assert "modelrollout.dev/rollback" in obj["metadata"]["finalizers"]
    assert rollout.traffic() == {"main": 70, "main-candidate": 30}
    cluster.run("delete", "mro", rollout.name, "-n", namespace, "--wait=false")
    wait_for(lambda: cluster.run("get", "mro", rollout.name, "-n", namespace, check=False).returncode != 0,
             "the ModelRollout to be gone", timeout=30)
    assert rollout.traffic() == {"main": 100}  # its candidate went first
