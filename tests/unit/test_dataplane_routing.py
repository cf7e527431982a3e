"""The local data plane's pure parts against the upstream behaviour they stand in for.

Routing as Seldon Core v1.18's controller writes the Istio VirtualService (one weighted destination per
non-shadow predictor, no header match, one mirror); pod templates as its Deployments hold them (the
predictor without traffic and replicas); the executor's histogram (labels, buckets, no namespace); Istio's
istio_requests_total labels; and the scrape config that puts the namespace on by relabelling.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from localcluster.dataplane.routing import (
    DEFAULT_PROGRESS_DEADLINE_S,
    EXECUTOR_BUCKETS,
    EXECUTOR_LABELS,
    EXECUTOR_METRIC,
    MESH_LABELS,
    Histogram,
    ServerSpec,
    executor_labels,
    mesh_labels,
    mirror_of,
    pick,
    pod_template_hash,
    predictor_version,
    progress_deadline_s,
    render_counters,
    render_histograms,
    route_for,
    servers_for,
    service_name,
    workload_name,
)
from localcluster.prometheus import (
    ANALYTICS,
    POD_MONITOR,
    ScrapeJob,
    dataplane_jobs,
    relabel_configs,
    render_config,
    target_group,
)
from tests.unit.test_promql_rules import run_promtool


def sdep(*predictors: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"predictors": list(predictors)}
    if annotations:
        spec["annotations"] = annotations
    return {"metadata": {"name": "digits", "namespace": "models"}, "spec": spec}


def predictor(name: str, traffic: int = 0, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"name": name, "traffic": traffic, "replicas": 1, "annotations": {"version": version},
            "graph": {"name": "classifier", "type": "MODEL", "modelUri": f"file:///models/digits/{version}"},
            **extra}


# --------------------------------------------------------------------------------------------------
# The VirtualService


def test_every_request_goes_by_weight_among_the_non_shadow_predictors() -> None:
    route = route_for(sdep(predictor("a", 10), predictor("b", 90), predictor("s", 0, shadow=True)))
    rng = random.Random(7)
    picked = Counter(p.name for p in (pick(route, rng) for _ in range(20000)) if p is not None)
    assert set(picked) == {"a", "b"}  # never the shadow
    assert abs(picked["a"] / 20000 - 0.10) < 0.01


def test_the_choice_ignores_readiness_a_destination_without_servers_keeps_its_share() -> None:
    # pick() has no notion of ready servers: Istio's weighted route does not either (the request then fails
    # at the mesh). Only the weights count.
    route = route_for(sdep(predictor("a", 50), predictor("b", 50)))
    rng = random.Random(1)
    assert Counter(p.name for p in (pick(route, rng) for _ in range(2000)) if p)["b"] > 900


def test_a_single_destination_takes_everything_whatever_its_weight() -> None:
    route = route_for(sdep(predictor("main", 0)))
    assert {p.name for p in (pick(route, random.Random(i)) for i in range(50)) if p} == {"main"}
    assert pick(route_for(sdep(predictor("s", 0, shadow=True))), random.Random(0)) is None


def test_the_last_shadow_is_the_mirror_at_its_traffic_else_everything() -> None:
    assert mirror_of(route_for(sdep(predictor("main", 100)))) is None
    one = mirror_of(route_for(sdep(predictor("main", 100), predictor("s", 0, shadow=True))))
    assert one is not None and (one.predictor.name, one.percent) == ("s", 100.0)
    two = mirror_of(route_for(sdep(predictor("main", 100), predictor("s1", 0, shadow=True),
                                   predictor("s2", 25, shadow=True))))
    assert two is not None and (two.predictor.name, two.percent) == ("s2", 25.0)


def test_destinations_are_the_predictors_services_and_workloads() -> None:
    route = route_for(sdep(predictor("main", 100, labels={"version": "v1"})))
    main = route.predictors[0]
    assert (main.service, main.workload, main.pod_version) == ("digits-main", "digits-main-0-classifier", "v1")
    custom = predictor("main", annotations={"seldon.io/svc-name": "custom"},
                       componentSpecs=[{"spec": {"containers": [{"name": "classifier"}, {"name": "sidecar"}]}}])
    assert service_name("digits", custom) == "custom"
    assert workload_name("digits", custom) == "digits-main-0-classifier-sidecar"
    long = predictor("p" * 70)
    assert service_name("digits", long).startswith("seldon-") and len(service_name("digits", long)) <= 63


# --------------------------------------------------------------------------------------------------
# Pod templates: what restarts a predictor's servers


def test_annotations_component_specs_and_the_graph_change_the_pod_template() -> None:
    base = predictor("main", 100)
    template = pod_template_hash(sdep(base), base)
    for change in (lambda p: p["annotations"].update(team="x"),
                   lambda p: p.update(componentSpecs=[{"spec": {"containers": [{"name": "classifier", "env": [
                       {"name": "X", "value": "1"}]}]}}]),
                   lambda p: p["graph"].update(modelUri="file:///models/digits/2.0.0"),
                   lambda p: p.update(labels={"version": "v2"})):
        changed = copy.deepcopy(base)
        change(changed)
        assert pod_template_hash(sdep(changed), changed) != template
    assert pod_template_hash(sdep(base, annotations={"seldon.io/engine-log-level": "debug"}), base) != template


def test_traffic_and_replicas_leave_the_pod_template_alone() -> None:
    base = predictor("main", 100)
    moved = {**copy.deepcopy(base), "traffic": 10, "replicas": 3}
    assert pod_template_hash(sdep(moved), moved) == pod_template_hash(sdep(base), base)


def test_servers_carry_the_template_and_the_predictor_version() -> None:
    servers, problems = servers_for(sdep(predictor("main", 100, version="2.0.0", replicas=2),
                                         predictor("bad", 0, graph={"name": "m", "modelUri": "gs://x/y"})),
                                    Path("/srv/models"))
    assert [s.key for s in servers] == [("models", "digits", "main", 0), ("models", "digits", "main", 1)]
    assert {s.predictor_version for s in servers} == {"2.0.0"} and len({s.template for s in servers}) == 1
    assert servers[0].model_path == "/srv/models/digits/2.0.0"
    assert problems and "file:// models only" in problems[0]


def test_predictor_version_and_progress_deadline_defaults() -> None:
    assert predictor_version({"annotations": {"version": "2.0.0"}}) == "2.0.0"
    assert predictor_version({"annotations": {"modelrollout.dev/version": "2.0.0"}}) == ""  # unset: empty
    assert progress_deadline_s({}) == DEFAULT_PROGRESS_DEADLINE_S == 600
    assert progress_deadline_s({"progressDeadlineSeconds": 5}) == 5


# --------------------------------------------------------------------------------------------------
# The executor's histogram


def spec(predictor_name: str = "main", version: str = "1.0.0") -> ServerSpec:
    return ServerSpec("models", "digits", predictor_name, 0, "file:///m", "/m", (), "abc", version)


def test_the_executor_histogram_has_the_executors_labels_buckets_and_no_namespace() -> None:
    histogram = Histogram()
    for seconds in (0.004, 0.02, 0.02, 0.3, 12.0):
        histogram.observe(seconds)
    series = {executor_labels(spec(), "predictions", 200): histogram,
              executor_labels(spec("c", ""), "feedback", 500): Histogram()}
    text = render_histograms(EXECUTOR_METRIC, "help", EXECUTOR_LABELS, series)
    (family,) = list(text_string_to_metric_families(text))
    assert family.name == EXECUTOR_METRIC and family.type == "histogram"
    buckets = [s for s in family.samples if s.name.endswith("_bucket")]
    for sample in family.samples:
        assert set(sample.labels) - {"le"} == set(EXECUTOR_LABELS), sample.labels  # no namespace
        assert sample.labels["method"] == "post" and sample.labels["service"] in {"predictions", "feedback"}
    main = {s.labels["le"]: s.value for s in buckets if s.labels["predictor_name"] == "main"}
    assert list(main) == [*(format(b, "g") for b in EXECUTOR_BUCKETS), "+Inf"]  # 1 and 10, as Go writes them
    assert EXECUTOR_BUCKETS == (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
    assert (main["0.005"], main["0.025"], main["0.25"], main["0.5"], main["10"], main["+Inf"]) == (1, 3, 3, 4, 4, 5)
    assert 'predictor_version="1.0.0"' in text and 'code="200"' in text and 'code="500"' in text
    assert 'predictor_version=""' in text  # an unset version annotation is an empty label, as the Go executor's
    assert render_histograms(EXECUTOR_METRIC, "help", EXECUTOR_LABELS, {}) == ""


# --------------------------------------------------------------------------------------------------
# istio_requests_total


def test_a_503_with_no_healthy_upstream_names_the_service_not_a_workload() -> None:
    route = route_for(sdep(predictor("a", 10), predictor("b", 90)))
    destination = route.predictor("b")
    labels = dict(zip(MESH_LABELS, mesh_labels("models", destination, False, 503, "UH"), strict=True))
    assert labels["reporter"] == "source" and labels["source_workload"] == "istio-ingressgateway"
    assert (labels["response_code"], labels["response_flags"]) == ("503", "UH")
    assert labels["destination_service_name"] == "digits-b"
    assert labels["destination_service"] == "digits-b.models.svc.cluster.local"
    assert labels["destination_service_namespace"] == "models"
    assert labels["destination_workload"] == labels["destination_workload_namespace"] == "unknown"
    assert labels["connection_security_policy"] == "unknown" and labels["request_protocol"] == "http"


def test_an_answered_request_names_the_destination_workload() -> None:
    destination = route_for(sdep(predictor("b", 100))).predictor("b")
    labels = dict(zip(MESH_LABELS, mesh_labels("models", destination, True, 200, "-"), strict=True))
    assert (labels["destination_workload"], labels["destination_workload_namespace"]) == (
        "digits-b-0-classifier", "models")
    assert labels["destination_principal"] == "spiffe://cluster.local/ns/models/sa/default"
    text = render_counters("istio_requests_total", "help", MESH_LABELS,
                           {mesh_labels("models", destination, True, 200, "-"): 3})
    (family,) = list(text_string_to_metric_families(text))
    assert family.type == "counter" and family.samples[0].value == 3
    assert set(family.samples[0].labels) == set(MESH_LABELS)


# --------------------------------------------------------------------------------------------------
# Scrape config: the namespace comes from relabelling


@pytest.mark.parametrize(("mode", "label"), [(POD_MONITOR, "namespace"), (ANALYTICS, "kubernetes_namespace")])
def test_both_scrape_modes_relabel_the_pods_namespace(mode: str, label: str, tmp_path: Path) -> None:
    jobs = dataplane_jobs("127.0.0.1:8080", tmp_path, mode=mode)
    config = yaml.safe_load(render_config([*jobs, ScrapeJob("operator", ["127.0.0.1:8000"])], "1s"))
    by_name = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in ("seldon-executors", "model-servers", "istio-ingressgateway"):
        job = by_name[name]
        assert job["honor_labels"] is False
        assert {"source_labels": ["__meta_kubernetes_namespace"], "action": "replace",
                "target_label": label} in job["relabel_configs"]
    assert by_name["seldon-executors"]["file_sd_configs"][0]["files"] == [str(tmp_path / "executors.json")]
    gateway = by_name["istio-ingressgateway"]
    assert gateway["metrics_path"] == "/stats/prometheus"
    assert gateway["static_configs"][0]["labels"]["__meta_kubernetes_namespace"] == "istio-system"
    assert "relabel_configs" not in by_name["operator"]  # jobs without a mode are left as they are
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    for name in ("executors.json", "model-servers.json"):
        (tmp_path / name).write_text("[]")
    checked = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_unknown_scrape_mode_is_refused() -> None:
    assert [c["target_label"] for c in relabel_configs(POD_MONITOR)] == ["namespace", "pod", "container"]
    with pytest.raises(ValueError, match="unknown scrape mode"):
        relabel_configs("podmonitors")


def test_an_executor_target_carries_its_namespace_as_a_meta_label_and_its_path() -> None:
    group = target_group("127.0.0.1:8080", "models", metrics_path="/metrics/models", container="engine")
    assert group == {"targets": ["127.0.0.1:8080"], "labels": {
        "__meta_kubernetes_namespace": "models", "__metrics_path__": "/metrics/models",
        "__meta_kubernetes_pod_container_name": "engine"}}
