"""A Prometheus server (Debian's package) as a plain process on loopback, with a generated config.

Used by the local cluster and by the tests: scrape the given targets at a short interval, keep the
data in a folder of ours, wait for readiness with a deadline, stop only our own process.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localcluster.controlplane import ControlPlaneError, answers, free_port, wait_until


class PrometheusError(ControlPlaneError):
    """Prometheus could not be started (a local-cluster error like the others)."""


@dataclass
class ScrapeJob:
    name: str
    targets: Sequence[str]  # host:port
    metrics_path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)
    file_sd: str | None = None  # a targets file Prometheus re-reads when it changes (instead of targets)


def render_config(jobs: Sequence[ScrapeJob], scrape_interval: str) -> str:
    return yaml.safe_dump({
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [_scrape_config(job) for job in jobs],
    }, sort_keys=False)


def _scrape_config(job: ScrapeJob) -> dict[str, object]:
    config: dict[str, object] = {"job_name": job.name, "metrics_path": job.metrics_path}
    if job.file_sd:
        config["file_sd_configs"] = [{"files": [job.file_sd], "refresh_interval": "5s"}]
    else:
        config["static_configs"] = [{"targets": list(job.targets), "labels": dict(job.labels)}]
    return config


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
        config = self.workdir / "prometheus.yml"
        config.write_text(render_config(self.jobs, self.scrape_interval))
        with open(self.workdir / "prometheus.log", "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
                 "--storage.tsdb.retention.time=2h"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
