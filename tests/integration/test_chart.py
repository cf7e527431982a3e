"""The Helm chart: lint, render, schema and server-side validation, CRD sync, and least-privilege RBAC proven
by running the operator under the chart's ServiceAccount against the real local kube-apiserver."""

from __future__ import annotations

import filecmp
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from localcluster.executor_exporter import ExecutorExporter, Traffic
from localcluster.processes import free_port
from localcluster.prometheus import PrometheusServer
from testkit.kube import Kube
from testkit.processes import OperatorProcess
from testkit.rollouts import EXPORTER_ANALYSIS, model_rollout
from testkit.waiting import wait_for
from tests.integration.conftest import watch_rollout

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelrollout"
K8S_VERSION = "1.35.0"  # the local kube-apiserver's minor; kubernetes-validate ships its schemas
GOOD = Traffic(rps=40, error_ratio=0.0, latency_s=0.02)
STEPS = [{"setWeight": 20}, {"pause": {"duration": "3s"}}, {"setWeight": 60}, {"analysis": {}},
         {"setWeight": 100}]
# Kinds whose CRDs the local cluster does not have: checked structurally instead of by the API server.
NOT_INSTALLED = {"ServiceMonitor"}
# What a missing permission looks like in the operator's log: the client's 403, or Kopf's own fallback warning.
# A 403 anywhere but in a log line's timestamp (",403]" is 403 milliseconds).
DENIED = re.compile(r"(?<![,.:])\b403\b|Forbidden|Not enough permissions", re.IGNORECASE)

# Value sets the chart must render for, as --set arguments (release "mr" in namespace "models").
CASES: dict[str, list[str]] = {
    "default": [],
    "cluster-wide": ["watch.clusterWide=true", "prometheusUrl=http://prom.monitoring.svc:9090"],
    "namespaced": ["watch.clusterWide=false", "watch.namespaces={team-a,team-b}"],
    "ha": ["ha.enabled=true", "replicaCount=2"],
    "ha-namespaced": ["ha.enabled=true", "replicaCount=3", "watch.clusterWide=false",
                      "watch.namespaces={team-a,team-b}"],
    "servicemonitor": ["serviceMonitor.enabled=true", "serviceMonitor.labels.release=kube-prometheus-stack"],
}


@pytest.fixture(scope="session")
def helm() -> str:
    """The Helm binary built from the Go module proxy; no skip: a failed build fails the tests."""
    result = subprocess.run(["bash", str(REPO / "localcluster" / "build-helm.sh")], capture_output=True, text=True,
                            timeout=1200)
    if result.returncode != 0:
        pytest.fail(f"building helm failed ({result.returncode}):\n{result.stderr[-4000:]}")
    paths = [line.split("=", 1)[1] for line in result.stdout.splitlines() if line.startswith("helm=")]
    assert paths and Path(paths[0]).is_file(), result.stdout
    return paths[0]


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def render(helm: str, sets: list[str], release: str = "mr", namespace: str = "models",
           check: bool = True) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", K8S_VERSION]
    for value in sets:
        args += ["--set", value]
    result = run_helm(helm, *args, check=check)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def container_args(docs: list[dict[str, Any]]) -> list[str]:
    return list(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])


def rules(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """A role's rules flattened to (apiGroup, resource, verb) triples."""
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


# The exact permissions the operator needs in a namespace it serves (see handlers.py and backends/seldon_v1.py).
NAMESPACE_RULES = {
    ("modelrollout.dev", "modelrollouts", "get"), ("modelrollout.dev", "modelrollouts", "list"),
    ("modelrollout.dev", "modelrollouts", "watch"),
    # Action annotations are cleared, and the operator's finalizer added and removed, on the main resource.
    ("modelrollout.dev", "modelrollouts", "patch"), ("modelrollout.dev", "modelrollouts", "update"),
    ("modelrollout.dev", "modelrollouts/status", "patch"),
    # Asked for by the OwnerReferencesPermissionEnforcement admission plugin where it runs.
    ("modelrollout.dev", "modelrollouts/finalizers", "patch"),
    ("modelrollout.dev", "modelrollouts/finalizers", "update"),
    ("modelrollout.dev", "analysistemplates", "get"),
    ("modelrollout.dev", "analysistemplates", "list"),
    ("modelrollout.dev", "analysistemplates", "watch"),
    ("machinelearning.seldon.io", "seldondeployments", "get"),
    ("machinelearning.seldon.io", "seldondeployments", "update"),
    # The deployments' watch: the cache observations read, and a change wakes the rollouts acting on it.
    ("machinelearning.seldon.io", "seldondeployments", "list"),
    ("machinelearning.seldon.io", "seldondeployments", "watch"),
    # Events are posted, and a repeat is merged into the earlier Event by patching its count.
    ("", "events", "create"), ("", "events", "get"), ("", "events", "patch"),
}
# The grants named above that a role must never lose, whatever else changes in NAMESPACE_RULES.
MUST_GRANT = {
    ("modelrollout.dev", "modelrollouts", "patch"), ("modelrollout.dev", "modelrollouts", "update"),
    ("modelrollout.dev", "modelrollouts/finalizers", "patch"),
    ("modelrollout.dev", "modelrollouts/finalizers", "update"),
    ("", "events", "get"), ("", "events", "patch"),
}
DISCOVERY_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", "list"),
                   ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}


# ------------------------------------------------------------------ lint and render


def test_helm_lint(helm: str) -> None:
    run_helm(helm, "lint", "--strict", str(CHART))
    run_helm(helm, "lint", "--strict", str(CHART), "--set", "watch.clusterWide=false",
             "--set", "watch.namespaces={team-a,team-b}", "--set", "ha.enabled=true", "--set", "replicaCount=2")


@pytest.mark.parametrize("case", CASES)
def test_renders_and_validates_against_kubernetes_schemas(helm: str, case: str) -> None:
    docs = render(helm, CASES[case])
    assert by_kind(docs, "Deployment") and by_kind(docs, "ServiceAccount")
    for doc in docs:
        if doc["kind"] in NOT_INSTALLED:
            continue
        # strict: unknown fields are errors too, as the API server's field validation would report them.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_default_is_cluster_wide_standalone_and_restricted(helm: str) -> None:
    docs = render(helm, [])
    args = container_args(docs)
    assert "--all-namespaces" in args and not any(a.startswith("--namespace=") or a == "--namespace" for a in args)
    assert "--health-endpoint=http://0.0.0.0:8080/healthz" in args and "--metrics-port=8000" in args
    assert "--namespace-label=namespace" in args  # where a PodMonitor puts the namespace
    assert "--scrape-interval=30s" in args and not any(a.startswith("--allowed-prometheus-url") for a in args)
    assert "--leader-election" not in args
    assert {d["kind"] for d in docs} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service",
                                          "Deployment"}
    assert rules(one(docs, "ClusterRole")) == NAMESPACE_RULES | DISCOVERY_RULES
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
    pod_sc = pod["securityContext"]
    assert pod_sc["runAsNonRoot"] and pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080, "metrics": 8000}
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mr-modelrollout", "namespace": "models"}]
    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_namespaced_gets_one_role_per_namespace_and_no_cluster_access_to_objects(helm: str) -> None:
    docs = render(helm, CASES["namespaced"])
    args = container_args(docs)
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(rules(r) == NAMESPACE_RULES for r in roles)
    assert sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")) == ["team-a", "team-b"]
    # The only cluster-scoped grant is read-only discovery of namespaces and CRDs.
    assert rules(one(docs, "ClusterRole")) == DISCOVERY_RULES | {("", "namespaces", "list"),
                                                                 ("", "namespaces", "watch")}
    no_discovery = render(helm, [*CASES["namespaced"], "rbac.discovery=false"])
    assert not by_kind(no_discovery, "ClusterRole") and not by_kind(no_discovery, "ClusterRoleBinding")


LEASE_RULES = {("coordination.k8s.io", "leases", "create"), ("coordination.k8s.io", "leases", "get"),
               ("coordination.k8s.io", "leases", "update")}


def test_ha_values_render_leader_election_through_a_lease_in_the_release_namespace(helm: str) -> None:
    for case in ("ha", "ha-namespaced"):
        docs = render(helm, CASES[case])
        args = container_args(docs)
        assert {"--leader-election", "--lease-name=modelrollout", "--lease-duration=15", "--renew-deadline=10",
                "--retry-period=2"} <= set(args), args
        deployment = one(docs, "Deployment")
        assert deployment["spec"]["replicas"] >= 2 and "strategy" not in deployment["spec"]
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        lease_roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
        assert len(lease_roles) == 1 and lease_roles[0]["metadata"]["namespace"] == "models"
        assert rules(lease_roles[0]) == LEASE_RULES
        named = [r for r in lease_roles[0]["rules"] if "get" in r["verbs"]]
        assert named[0]["resourceNames"] == ["modelrollout"]  # only its own Lease, by name
        assert not any(g == "kopf.dev" for d in docs if d["kind"] in ("Role", "ClusterRole") for g, _, _ in rules(d))
        assert not by_kind(docs, "CustomResourceDefinition")


@pytest.mark.parametrize("case", ["default", "namespaced", "ha", "ha-namespaced"])
def test_roles_grant_event_merging_and_finalizer_updates(helm: str, case: str) -> None:
    docs = render(helm, CASES[case])
    roles = by_kind(docs, "Role") if "namespaced" in case else [one(docs, "ClusterRole")]
    roles = [r for r in roles if not r["metadata"]["name"].endswith("-leader-election")]
    assert roles
    for role in roles:
        granted = rules(role)
        assert granted >= MUST_GRANT, MUST_GRANT - granted
        # Only what the operator uses: no deleting anything, no wildcards.
        assert not {r for r in granted if r[2] in {"delete", "deletecollection", "*"} or "*" in r[:2]}
        # Should the newer events API be granted too, repeats are merged there the same way.
        if any(g == "events.k8s.io" for g, _, _ in granted):
            assert {("events.k8s.io", "events", v) for v in ("create", "get", "patch")} <= granted


def test_prometheus_values_become_operator_flags(helm: str) -> None:
    from modelrollout.__main__ import parse_args  # the operator's own parser reads what the chart renders

    default = container_args(render(helm, []))
    assert "--prometheus-url=http://prometheus-operated.monitoring.svc:9090" in default
    assert "--scrape-interval=30s" in default
    assert not any(a.startswith("--allowed-prometheus-url") for a in default)

    args = container_args(render(helm, [
        "prometheusUrl=http://prom.monitoring.svc:9090", "prometheus.scrapeInterval=1m30s",
        "prometheus.allowedUrls={http://prom-a.team-a.svc:9090,https://prom-b.example:9091/prometheus}"]))
    assert "--prometheus-url=http://prom.monitoring.svc:9090" in args  # the existing value keeps working
    assert "--scrape-interval=1m30s" in args
    assert [a for a in args if a.startswith("--allowed-prometheus-url")] == [
        "--allowed-prometheus-url=http://prom-a.team-a.svc:9090",
        "--allowed-prometheus-url=https://prom-b.example:9091/prometheus"]
    parsed = parse_args(args)
    assert parsed.prometheus_url == "http://prom.monitoring.svc:9090" and parsed.scrape_interval == 90.0
    assert parsed.allowed_prometheus_urls == ("http://prom-a.team-a.svc:9090",
                                              "https://prom-b.example:9091/prometheus")
    assert parse_args(default).scrape_interval == 30.0 and parse_args(default).allowed_prometheus_urls == ()


def test_scale_values_become_operator_flags(helm: str) -> None:
    from modelrollout.__main__ import parse_args

    default = parse_args(container_args(render(helm, [])))
    assert (default.concurrency, default.kube_workers, default.status_heartbeat) == (16, 16, 60.0)
    tuned = parse_args(container_args(render(helm, ["concurrency=256", "kubeWorkers=64", "statusHeartbeat=5m"])))
    assert (tuned.concurrency, tuned.kube_workers, tuned.status_heartbeat) == (256, 64, 300.0)
    assert parse_args(container_args(render(helm, ["statusHeartbeat=0s"]))).status_heartbeat == 0.0


def test_service_monitor_is_off_by_default_and_well_formed_when_on(helm: str) -> None:
    assert not by_kind(render(helm, []), "ServiceMonitor")
    docs = render(helm, CASES["servicemonitor"])
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    # The CRD is not installed locally: check it against the Prometheus Operator's API by structure.
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["models"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and re.fullmatch(r"\d+s", endpoint["interval"])


@pytest.mark.parametrize(("sets", "message"), [
    (["replicaCount=2"], "requires ha.enabled"),
    (["watch.clusterWide=false"], "watch.namespaces must list"),
    (["watch.namespaces={a}"], "only used when watch.clusterWide is false"),
    (["serviceMonitor.enabled=true", "metrics.port=0"], "metrics.port must not be 0"),
    (["prometheus.scrapeInterval=0s"], "prometheus.scrapeInterval must be above zero"),
    (["ha.enabled=true", "ha.renewDeadline=15"], "0 < retryPeriod < renewDeadline < leaseDuration"),
    (["ha.enabled=true", "ha.retryPeriod=0"], "0 < retryPeriod < renewDeadline < leaseDuration"),
    (["prometheus.scrapeInterval=30"], "prometheus.scrapeInterval must be a duration"),
    (["prometheus.scrapeInterval=soon"], "prometheus.scrapeInterval must be a duration"),
    (["prometheus.allowedUrls={prom:9090}"], "is not an http:// or https:// URL"),
    (["statusHeartbeat=60"], "statusHeartbeat must be a duration"),
    (["kubeWorkers=0"], "kubeWorkers must be at least 1"),
    (["prometheus.allowedUrls=http://prom:9090"], "prometheus.allowedUrls must be a list"),
])
def test_values_that_cannot_work_are_refused(helm: str, sets: list[str], message: str) -> None:
    args = ["template", "mr", str(CHART)]
    for value in sets:
        args += ["--set", value]
    result = run_helm(helm, *args, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top, chart = REPO / "crds", CHART / "crds"
    top_files = sorted(p.name for p in top.glob("*.yaml"))
    assert top_files and top_files == sorted(p.name for p in chart.glob("*.yaml")), \
        "CRD files differ: run bash charts/sync-crds.sh"
    _, mismatch, errors = filecmp.cmpfiles(top, chart, top_files, shallow=False)
    assert not mismatch and not errors, f"{mismatch + errors} differ: run bash charts/sync-crds.sh"


# ------------------------------------------------------------------ against the local kube-apiserver


@pytest.mark.parametrize("case", CASES)
def test_rendered_manifests_pass_server_side_dry_run(helm: str, cluster: Kube, namespace: str, case: str) -> None:
    # Watched namespaces must exist for their Roles: the test namespace and "default".
    sets = [s.replace("{team-a,team-b}", f"{{{namespace},default}}") for s in CASES[case]]
    docs = render(helm, sets, release=f"mr-{namespace}", namespace=namespace)
    docs = [d for d in docs if d["kind"] not in NOT_INSTALLED]
    cluster.run("apply", "--dry-run=server", "--validate=strict", "-f", "-", stdin=yaml.safe_dump_all(docs))


def install_service_account(helm: str, cluster: Kube, namespace: str, workdir: Path,
                            sets: tuple[str, ...] = ()) -> tuple[Path, list[dict[str, Any]]]:
    """Applies the chart's ServiceAccount and RBAC (namespace-scoped, for the test namespace) for real and
    writes a kubeconfig that authenticates as that ServiceAccount with a token from the TokenRequest API.
    Returns the kubeconfig and the cluster-scoped objects applied (for the caller to delete)."""
    docs = render(helm, ["watch.clusterWide=false", f"watch.namespaces={{{namespace}}}", *sets],
                  release=f"mr-{namespace}", namespace=namespace)
    rbac = [d for d in docs if d["kind"] in {"ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                                             "ClusterRoleBinding"}]
    cluster.run("apply", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    token = cluster.run("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {"apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
              "users": [{"name": sa, "user": {"token": token}}],
              "contexts": [{"name": sa, "context": {"cluster": admin["clusters"][0]["name"], "user": sa,
                                                     "namespace": namespace}}],
              "current-context": sa}
    path = workdir / "sa-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path, [d for d in rbac if d["kind"].startswith("Cluster")]


def delete_cluster_scoped(cluster: Kube, docs: list[dict[str, Any]]) -> None:
    """No controller manager deletes cluster-scoped objects with the namespace."""
    if docs:
        names = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs]
        cluster.run("delete", *names, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture
def service_account(helm: str, cluster: Kube, namespace: str, tmp_path: Path) -> Iterator[Path]:
    path, cluster_scoped = install_service_account(helm, cluster, namespace, tmp_path)
    yield path
    delete_cluster_scoped(cluster, cluster_scoped)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def pod_args(helm: str, namespace: str, prometheus: PrometheusServer, health_port: int, metrics_port: int,
             sets: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The container args the chart renders for a namespace-scoped install, with free local ports and the
    test's Prometheus (scraping every second) substituted, so the operator starts exactly as the pod would."""
    docs = render(helm, ["watch.clusterWide=false", f"watch.namespaces={{{namespace}}}",
                         f"prometheusUrl={prometheus.url}", "prometheus.scrapeInterval=1s",
                         f"metrics.port={metrics_port}", f"health.port={health_port}", *sets],
                  release=f"mr-{namespace}", namespace=namespace)
    return tuple(container_args(docs))


def drive_rollout_as(kubeconfig: Path, cluster: Kube, namespace: str, exporter: ExecutorExporter,
                     log_path: Path, args: tuple[str, ...], health_url: str, metrics_url: str,
                     env: dict[str, str] | None = None) -> str:
    """Runs the operator with the given identity and args through a whole good rollout, probing its health
    and metrics endpoints as the kubelet and Prometheus would; returns the operator's log."""
    as_sa = Kube(kubeconfig=kubeconfig, kubectl=cluster.kubectl)
    who = as_sa.run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout
    assert who == f"system:serviceaccount:{namespace}:mr-{namespace}-modelrollout"
    # Args given after OperatorProcess's own defaults win (argparse keeps the last value).
    operator = OperatorProcess(as_sa, log_path, extra_args=args,
                               env={"KUBECONFIG": str(kubeconfig), **(env or {})}).start()
    try:
        wait_for(lambda: http_ok(health_url), f"the health endpoint {health_url}", timeout=30)
        exporter.set(namespace, "digits", "main-candidate", GOOD)
        exporter.set(namespace, "digits", "main", GOOD)
        obj = model_rollout(steps=STEPS, analysis=EXPORTER_ANALYSIS)
        cluster.create(obj, namespace)
        rollout = watch_rollout(cluster, namespace, obj["metadata"]["name"])  # observed as admin
        rollout.wait(lambda s: s.get("candidateWeight") == 20, "candidate at 20%")
        assert rollout.traffic() == {"main": 80, "main-candidate": 20}
        status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=90)
        assert status["phase"] == "Succeeded", status
        assert status["stableVersion"] == "2.0.0" and rollout.traffic() == {"main": 100}
        assert rollout.events("Promoted") or rollout.events("Succeeded")  # events: create was allowed
        assert http_ok(health_url)
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            # The rollout's own series: the port the Service and ServiceMonitor scrape is the operator's.
            assert f'modelrollout_candidate_weight_percent{{namespace="{namespace}"'.encode() in response.read()
    finally:
        operator.stop()
    log = operator.log()
    assert "modelrollout operator started" in log, log[-3000:]
    denied = [line for line in log.splitlines() if DENIED.search(line)]
    assert not denied, "\n".join(denied)
    return log


def test_operator_runs_a_rollout_to_success_with_only_the_charts_rbac(
        helm: str, exporter: ExecutorExporter, prometheus: PrometheusServer, cluster: Kube, namespace: str,
        deployment: dict[str, Any], service_account: Path, tmp_path: Path) -> None:
    health, metrics = free_port(), free_port()
    args = pod_args(helm, namespace, prometheus, health, metrics)
    assert f"--namespace={namespace}" in args and "--all-namespaces" not in args
    drive_rollout_as(service_account, cluster, namespace, exporter, tmp_path / "operator.log", args,
                     f"http://127.0.0.1:{health}/healthz", f"http://127.0.0.1:{metrics}/metrics")


def test_ha_mode_leads_through_its_lease_and_rolls_out_with_only_the_charts_rbac(
        helm: str, exporter: ExecutorExporter, prometheus: PrometheusServer, cluster: Kube, namespace: str,
        deployment: dict[str, Any], tmp_path: Path) -> None:
    """The HA values' args and RBAC: an operator started as the pod would be (POD_NAME, POD_NAMESPACE from
    the downward API) takes the Lease in the release namespace and drives a rollout to success with no
    request forbidden. Two replicas together: tests/integration/test_leader_election.py."""
    sets = ("ha.enabled=true", "replicaCount=2")
    kubeconfig, cluster_scoped = install_service_account(helm, cluster, namespace, tmp_path, sets)
    try:
        health, metrics = free_port(), free_port()
        args = pod_args(helm, namespace, prometheus, health, metrics, (*sets, "verbose=true"))
        assert "--leader-election" in args
        drive_rollout_as(kubeconfig, cluster, namespace, exporter, tmp_path / "operator.log", args,
                         f"http://127.0.0.1:{health}/healthz", f"http://127.0.0.1:{metrics}/metrics",
                         env={"POD_NAME": "mr-operator-0", "POD_NAMESPACE": namespace})
    finally:
        delete_cluster_scoped(cluster, cluster_scoped)
    lease = cluster.get("lease", "modelrollout", namespace)
    # Handed back on a clean stop, so that a standby takes over at once rather than after leaseDuration.
    assert lease["spec"].get("holderIdentity") in (None, ""), lease["spec"]
    assert lease["spec"]["leaseDurationSeconds"] == 15 and "acquireTime" in lease["spec"]


@pytest.mark.parametrize(("verb", "resource", "allowed"), [
    ("delete", "seldondeployments.machinelearning.seldon.io", False),
    ("create", "seldondeployments.machinelearning.seldon.io", False),
    ("get", "secrets", False),
    ("list", "secrets", False),
    ("create", "pods", False),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", False),
    ("delete", "modelrollouts.modelrollout.dev", False),
    ("update", "seldondeployments.machinelearning.seldon.io", True),
    ("get", "seldondeployments.machinelearning.seldon.io", True),
    ("watch", "seldondeployments.machinelearning.seldon.io", True),
    ("patch", "modelrollouts.modelrollout.dev/status", True),
    ("watch", "modelrollouts.modelrollout.dev", True),
    ("patch", "modelrollouts.modelrollout.dev", True),
    ("update", "modelrollouts.modelrollout.dev", True),
    ("patch", "modelrollouts.modelrollout.dev/finalizers", True),
    ("update", "modelrollouts.modelrollout.dev/finalizers", True),
    ("create", "events", True),
    ("get", "events", True),
    ("patch", "events", True),
    ("delete", "events", False),
])
def test_service_account_can_do_only_what_it_needs(cluster: Kube, namespace: str, service_account: Path,
                                                    verb: str, resource: str, allowed: bool) -> None:
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource, "-n", namespace, *(["--subresource", sub] if sub else [])]
    result = Kube(kubeconfig=service_account, kubectl=cluster.kubectl).run(*args, check=False)
    assert result.stdout.strip() == ("yes" if allowed else "no"), (args, result.stdout, result.stderr)


def test_service_account_has_no_access_outside_its_namespace(cluster: Kube, service_account: Path) -> None:
    other = f"elsewhere-{uuid.uuid4().hex[:6]}"  # needs not exist: RBAC is evaluated without it
    as_sa = Kube(kubeconfig=service_account, kubectl=cluster.kubectl)
    for verb, resource in (("update", "seldondeployments.machinelearning.seldon.io"),
                           ("list", "modelrollouts.modelrollout.dev")):
        result = as_sa.run("auth", "can-i", verb, resource, "-n", other, check=False)
        assert result.stdout.strip() == "no", (verb, resource, result.stdout)
