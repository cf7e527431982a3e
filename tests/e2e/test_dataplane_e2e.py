"""The local data plane, with real model servers, behaves as Seldon Core v1 and Istio do where the operator
can tell: feedback goes by the traffic weights, the executor series have the executor's shape and get
their namespace from the scrape, a predictor without a ready server fails at the mesh, a pod-template
change restarts a predictor's servers, and Failed comes only after the progress deadline."""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from localcluster import services as local_services
from localcluster.dataplane.routing import EXECUTOR_BUCKETS
from localcluster.processes import pid_alive
from localcluster.prometheus import ANALYTICS, PrometheusServer, dataplane_jobs
from testkit import faults
from testkit.kube import Kube
from testkit.prometheus import prom_query, prom_value
from testkit.rollouts import model_uri
from testkit.seldon import delete_deployments, deploy, digits_sdep
from testkit.waiting import sample_during, wait_for

EXECUTOR = "seldon_api_executor_server_requests_seconds"
IMAGE = [0.0] * 64


def a_and_b(a_weight: int = 10) -> dict[str, Any]:
    """digits with predictor a (1.0.0) and b (2.0.0), each with Seldon's version annotation."""
    sdep = digits_sdep("1.0.0")
    a = sdep["spec"]["predictors"][0]
    a.update(name="a", traffic=a_weight, annotations={"version": "1.0.0"})
    b = copy.deepcopy(a)
    b.update(name="b", traffic=100 - a_weight, annotations={"version": "2.0.0"})
    b["graph"]["modelUri"] = model_uri("2.0.0")
    sdep["spec"]["predictors"].append(b)
    return sdep


def post(ingress: str, namespace: str, service: str, body: dict[str, Any],
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    url = f"{ingress}/seldon/{namespace}/digits/api/v1.0/{service}"
    assert url.startswith("http://127.")
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            payload = resp.read()
            status, answer_headers = resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        payload, status, answer_headers = exc.read(), exc.code, dict(exc.headers)
    try:
        parsed = json.loads(payload)
    except ValueError:
        parsed = {}
    return status, parsed if isinstance(parsed, dict) else {}, answer_headers


def version_of(answer: dict[str, Any]) -> str:
    return str(((answer.get("meta") or {}).get("tags") or {}).get("served_model_version", ""))


def by_predictor(prometheus: str, selector: str) -> dict[str, float]:
    result = prom_query(prometheus, f"sum by (predictor_name) ({EXECUTOR}_count{{{selector}}})")
    return {r["metric"]["predictor_name"]: float(r["value"][1]) for r in result}


def test_feedback_goes_by_weight_and_executor_series_have_the_executors_shape(
        cluster: Kube, namespace: str, dataplane: local_services.Services, tmp_path: Path) -> None:
    ingress, prometheus = dataplane.ingress_url, dataplane.prometheus_url
    deploy(cluster, namespace, a_and_b(10))
    try:
        # An answer from a (1.0.0), fed back 300 times naming a, as the old local Locust did.
        answer_from_a: dict[str, Any] = {}
        for _ in range(100):
            status, answer, headers = post(ingress, namespace, "predictions", {"data": {"ndarray": [IMAGE]}})
            assert status == 200 and "Seldon-Predictor" not in headers
            if version_of(answer) == "1.0.0":
                answer_from_a = answer
                break
        assert answer_from_a, "a (10%) never answered in 100 predictions"
        feedback = {"request": {"data": {"ndarray": [IMAGE]}}, "response": answer_from_a,
                    "truth": {"data": {"ndarray": [0]}}}
        for _ in range(300):
            status, _, _ = post(ingress, namespace, "feedback", feedback, {"Seldon-Predictor": "a"})
            assert status == 200
        selector = f'namespace="{namespace}",service="feedback"'
        counts = wait_for(lambda: (lambda c: c if sum(c.values()) == 300 else None)(by_predictor(prometheus, selector)),
                          "300 feedback requests in Prometheus", timeout=30, interval=0.5)
        assert 0.03 <= counts.get("a", 0) / 300 <= 0.18, counts  # by weight (10%), not to the predictor named

        # The series as Prometheus stores them: the executor's labels, the namespace from relabelling.
        series = prom_query(prometheus, f'{EXECUTOR}_bucket{{namespace="{namespace}"}}')
        assert series
        les = {s["metric"]["le"] for s in series}
        assert les == {*(format(b, "g") for b in EXECUTOR_BUCKETS), "+Inf"}, les
        for s in series:
            labels = s["metric"]
            assert labels["method"] == "post" and labels["code"] == "200", labels
            assert labels["service"] in {"predictions", "feedback"}
            assert {labels["predictor_name"]: labels["predictor_version"]}.items() <= {"a": "1.0.0",
                                                                                      "b": "2.0.0"}.items()
            assert "exported_namespace" not in labels and labels["deployment_name"] == "digits"
        with urllib.request.urlopen(f"{ingress}/metrics/{namespace}", timeout=5) as resp:
            raw = resp.read().decode()
        assert f"{EXECUTOR}_count{{" in raw and "namespace=" not in raw  # the exporter never sends one

        # The second scrape mode (seldon-core-analytics' job): kubernetes_namespace, no namespace label.
        analytics = PrometheusServer(tmp_path / "analytics", dataplane_jobs(f"127.0.0.1:{dataplane.ingress_port}",
                                                                           mode=ANALYTICS),
                                     scrape_interval="1s").start()
        try:
            found = wait_for(lambda: analytics.query(f'{EXECUTOR}_count{{kubernetes_namespace="{namespace}"}}'),
                             "the analytics-mode Prometheus to scrape the executors", timeout=30)
            assert all("namespace" not in r["metric"] and "exported_namespace" not in r["metric"]
                       for r in found), found  # type: ignore[operator]
        finally:
            analytics.stop()
    finally:
        delete_deployments(cluster, ingress, namespace)


def test_a_predictor_without_a_ready_server_fails_at_the_mesh_not_in_executor_series(
        cluster: Kube, namespace: str, dataplane: local_services.Services) -> None:
    ingress, prometheus = dataplane.ingress_url, dataplane.prometheus_url
    deploy(cluster, namespace, a_and_b(10))
    try:
        victim = faults.wait_ready_server(ingress, namespace, "digits", "b")
        faults.kill_pid(victim["pid"])
        # Gone, not dying: a request the dying server had accepted would be the executor's 500, not the mesh's.
        wait_for(lambda: not pid_alive(victim["pid"]), "b's server to be gone", timeout=10, interval=0.02)
        answers = [post(ingress, namespace, "predictions", {"data": {"ndarray": [IMAGE]}}) for _ in range(40)]
        statuses = Counter(status for status, _, _ in answers)
        failed = statuses[503]
        assert set(statuses) <= {200, 503} and failed >= 20, statuses  # b's 90%: retries never go to a
        assert {version_of(answer) for status, answer, _ in answers if status == 200} <= {"1.0.0"}
        mesh = (f'sum(istio_requests_total{{destination_service_namespace="{namespace}",'
                f'destination_service_name="digits-b",response_code="503",reporter="source"}})')
        seen = wait_for(lambda: (lambda v: v if v is not None and v >= failed else None)(prom_value(prometheus, mesh)),
                        f"{failed} mesh 503s in istio_requests_total", timeout=30, interval=0.5)
        assert seen == failed
        assert not prom_query(prometheus, f'{EXECUTOR}_count{{namespace="{namespace}",code=~"5.."}}')
        flags = {r["metric"]["response_flags"] for r in prom_query(
            prometheus, f'istio_requests_total{{destination_service_namespace="{namespace}",response_code="503"}}')}
        assert flags <= {"UH", "UF,URX", "UC"} and flags, flags
    finally:
        delete_deployments(cluster, ingress, namespace)


def servers_by_predictor(ingress: str, namespace: str) -> dict[str, dict[str, Any]]:
    return {s["predictor"]: s for s in faults.servers(ingress, namespace, "digits")}


def test_an_annotation_change_restarts_the_predictor_and_a_weight_change_does_not(
        cluster: Kube, namespace: str, dataplane: local_services.Services) -> None:
    ingress = dataplane.ingress_url
    sdep = a_and_b(50)
    deploy(cluster, namespace, sdep)
    try:
        before = servers_by_predictor(ingress, namespace)
        sdep["spec"]["predictors"][0]["traffic"], sdep["spec"]["predictors"][1]["traffic"] = 20, 80
        deploy(cluster, namespace, sdep)

        def routed() -> list[dict[str, Any]] | None:
            route = faults.dataplane_status(ingress)["routes"].get(f"{namespace}/digits")
            return route if route and {p["name"]: p["traffic"] for p in route} == {"a": 20, "b": 80} else None
        wait_for(routed, "the new weights in the VirtualService", timeout=15)
        after_weights = servers_by_predictor(ingress, namespace)
        assert {p: s["pid"] for p, s in after_weights.items()} == {p: s["pid"] for p, s in before.items()}

        sdep["spec"]["predictors"][0]["annotations"]["team"] = "models"
        cluster.apply(sdep, namespace)
        restarted = wait_for(lambda: (lambda s: s if s.get("templateHash") != before["a"]["templateHash"]
                                      and s["ready"] else None)(servers_by_predictor(ingress, namespace)["a"]),
                             "a's server replaced after its annotation changed", timeout=60)
        assert restarted["pid"] != before["a"]["pid"]
        wait_for(lambda: not pid_alive(before["a"]["pid"]), "a's old server to stop", timeout=30)
        assert servers_by_predictor(ingress, namespace)["b"]["pid"] == before["b"]["pid"]  # b untouched
    finally:
        delete_deployments(cluster, ingress, namespace)


def test_failed_only_after_the_progress_deadline(cluster: Kube, namespace: str,
                                                 dataplane: local_services.Services) -> None:
    ingress = dataplane.ingress_url
    sdep = digits_sdep("1.0.0")
    deploy(cluster, namespace, sdep)
    try:
        broken = copy.deepcopy(sdep["spec"]["predictors"][0])
        broken.update(name="broken", traffic=0, progressDeadlineSeconds=8)
        broken["graph"]["modelUri"] = model_uri("0.0.0-missing")  # no such model: its server never gets ready
        sdep["spec"]["predictors"].append(broken)
        cluster.apply(sdep, namespace)
        started = time.monotonic()

        def state() -> str:
            return str((cluster.get("sdep", "digits", namespace).get("status") or {}).get("state"))
        wait_for(lambda: state() == "Creating", "Creating after the write", timeout=15)
        # Well inside the deadline: crashing is not Failed yet.
        seen = sample_during(state, 6, interval=0.5, start=started)
        assert set(seen) <= {"Creating", "Available"} and "Failed" not in seen, seen
        wait_for(lambda: state() == "Failed", "Failed after the progress deadline", timeout=30)
        assert time.monotonic() - started >= 8
        assert "broken" in (cluster.get("sdep", "digits", namespace)["status"].get("description") or "")
    finally:
        delete_deployments(cluster, ingress, namespace)
