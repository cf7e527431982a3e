"""A Prometheus server (Debian's package) as a plain process on loopback, with a generated config.

Used by the local cluster and by the tests: scrape the given targets at a short interval, keep the
data in a folder of ours, wait for readiness with a deadline, stop only our own process.

Namespaces come from relabelling, never from the exporters. On a cluster each Seldon executor runs in its
predictor's pod and exports no namespace; Prometheus attaches the pod's namespace from service discovery
(``__meta_kubernetes_namespace``). Two scrape modes render that step as the two usual set-ups do:

- ``podmonitor`` (default): as a Prometheus Operator PodMonitor/ServiceMonitor generates it, the label
  ``namespace`` (and ``pod``, ``container``);
- ``analytics``: as Seldon's seldon-core-analytics chart's ``kubernetes-pods`` job does, the label
  ``kubernetes_namespace`` (and ``kubernetes_pod_name``).

The local data plane serves every namespace from one ingress, so it exposes its executors' series per
namespace (``/metrics/<namespace>``) and writes one file_sd target per namespace with the meta labels a
pod would have (``target_group``); the relabelling above then gives each its namespace. ``honor_labels`` is
false, as in both set-ups: an exporter that sent a ``namespace`` label itself would see it renamed
``exported_namespace``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localcluster.controlplane import STATE_DIR, ControlPlaneError, answers, wait_until
from localcluster.processes import free_port, spawn, stop


class PrometheusError(ControlPlaneError):
    """Prometheus could not be started (a local-cluster error like the others)."""


POD_MONITOR = "podmonitor"  # namespace=..., as a Prometheus Operator PodMonitor (the default)
ANALYTICS = "analytics"  # kubernetes_namespace=..., as seldon-core-analytics' kubernetes-pods job
NAMESPACE_LABEL = {POD_MONITOR: "namespace", ANALYTICS: "kubernetes_namespace"}
# Kubernetes service discovery's meta labels of a pod target; file_sd and static targets carry them here.
META_NAMESPACE = "__meta_kubernetes_namespace"
META_POD = "__meta_kubernetes_pod_name"
META_CONTAINER = "__meta_kubernetes_pod_container_name"
_RELABEL_TARGETS = {
    POD_MONITOR: ((META_NAMESPACE, "namespace"), (META_POD, "pod"), (META_CONTAINER, "container")),
    ANALYTICS: ((META_NAMESPACE, "kubernetes_namespace"), (META_POD, "kubernetes_pod_name")),
}
# The local data plane's file_sd targets (written by localcluster.dataplane's controller).
TARGETS_DIR = STATE_DIR / "prometheus" / "targets"
EXECUTOR_TARGETS = "executors.json"  # one target per namespace: its executors' series, /metrics/<namespace>
MODEL_SERVER_TARGETS = "model-servers.json"  # one target per model-server process
GATEWAY_STATS_PATH = "/stats/prometheus"  # where Istio's proxies (the ingress gateway too) export their stats


@dataclass
class ScrapeJob:
    name: str
    targets: Sequence[str]  # host:port
    metrics_path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)
    file_sd: str | None = None  # a targets file Prometheus re-reads when it changes (instead of targets)
    mode: str | None = None  # POD_MONITOR or ANALYTICS: relabel the targets' meta labels; None: as they are


def render_config(jobs: Sequence[ScrapeJob], scrape_interval: str) -> str:
    return yaml.safe_dump({
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [_scrape_config(job) for job in jobs],
    }, sort_keys=False)


def relabel_configs(mode: str) -> list[dict[str, object]]:
    """The target relabelling of a scrape mode: the pod's namespace (and name, container) become labels."""
    if mode not in _RELABEL_TARGETS:
        raise ValueError(f"unknown scrape mode {mode!r}; use {POD_MONITOR!r} or {ANALYTICS!r}")
    return [{"source_labels": [source], "action": "replace", "target_label": target}
            for source, target in _RELABEL_TARGETS[mode]]


def _scrape_config(job: ScrapeJob) -> dict[str, object]:
    config: dict[str, object] = {"job_name": job.name, "metrics_path": job.metrics_path}
    if job.file_sd:
        config["file_sd_configs"] = [{"files": [job.file_sd], "refresh_interval": "5s"}]
    else:
        config["static_configs"] = [{"targets": list(job.targets), "labels": dict(job.labels)}]
    if job.mode is not None:
        config["honor_labels"] = False
        config["relabel_configs"] = relabel_configs(job.mode)
    return config


def target_group(address: str, namespace: str, metrics_path: str | None = None, pod: str | None = None,
                 container: str | None = None) -> dict[str, object]:
    """A file_sd target group for something that runs in `namespace`, with the meta labels its pod would have."""
    labels = {META_NAMESPACE: namespace}
    if metrics_path is not None:
        labels["__metrics_path__"] = metrics_path
    if pod is not None:
        labels[META_POD] = pod
    if container is not None:
        labels[META_CONTAINER] = container
    return {"targets": [address], "labels": labels}


def write_targets(path: Path, groups: Sequence[dict[str, object]]) -> str:
    """Write a file_sd targets file atomically (Prometheus never reads half a file); returns its text."""
    text = json.dumps(list(groups), indent=1, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return text


def dataplane_jobs(ingress: str, targets_dir: Path = TARGETS_DIR, mode: str = POD_MONITOR) -> list[ScrapeJob]:
    """Scrape jobs for the local data plane at `ingress` (host:port), relabelled in `mode`: its executors
    (per namespace), its model servers and its ingress gateway's Istio stats (a pod in istio-system)."""
    return [
        ScrapeJob("seldon-executors", [], file_sd=str(targets_dir / EXECUTOR_TARGETS), mode=mode),
        ScrapeJob("model-servers", [], file_sd=str(targets_dir / MODEL_SERVER_TARGETS), mode=mode),
        ScrapeJob("istio-ingressgateway", [ingress], metrics_path=GATEWAY_STATS_PATH, mode=mode,
                  labels={META_NAMESPACE: "istio-system", META_POD: "istio-ingressgateway-0",
                          META_CONTAINER: "istio-proxy"}),
    ]


class PrometheusServer:
    def __init__(self, workdir: Path, jobs: Sequence[ScrapeJob], scrape_interval: str = "1s",
                 port: int | None = None, binary: str | None = None) -> None:
        self.workdir = workdir
        self.jobs = list(jobs)
        self.scrape_interval = scrape_interval
        self.port = port or free_port()
        self.binary = binary or shutil.which("prometheus") or "/usr/bin/prometheus"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_deadline_s: float = 60.0) -> PrometheusServer:
        if not Path(self.binary).exists():
            raise PrometheusError(f"prometheus not found at {self.binary}; `make system-deps` installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for job in self.jobs:  # a targets file not written yet is no targets, not a discovery error
            if job.file_sd and not Path(job.file_sd).exists():
                write_targets(Path(job.file_sd), [])
        config = self.workdir / "prometheus.yml"
        config.write_text(render_config(self.jobs, self.scrape_interval))
        self.proc = spawn([self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                           f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                           "--storage.tsdb.retention.time=2h"], self.workdir / "prometheus.log")
        try:
            wait_until(self.ready, f"prometheus (log in {self.workdir})", ready_deadline_s, self.proc)
        except ControlPlaneError as exc:
            self.stop()
            raise PrometheusError(str(exc)) from None
        return self

    def ready(self) -> bool:
        return answers(f"{self.url}/-/ready")

    def query(self, promql: str) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return list(json.loads(resp.read())["data"]["result"])

    def stop(self) -> None:
        stop(self.proc, timeout=20, group=False)
