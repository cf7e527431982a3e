"""``make demo``: two canary rollouts on the local cluster, with progress a person can follow.

Expects ``make cluster-up`` to have run (the Makefile does it). It starts Prometheus and the operator as
their own processes, deploys SeldonDeployment ``digits`` at 1.0.0, rolls 2.0.0 out (healthy: promoted),
then 2.1.0 (5xx errors: rolled back), and ends with a summary table, also written to reports/.

Request metrics come from a synthetic Seldon-executor endpoint (``localcluster.executor_exporter``)
until real model servers serve behind the local ingress; everything else is real: kube-apiserver,
Prometheus, the operator and its PromQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster import controlplane
from localcluster.executor_exporter import ExecutorExporter, Traffic
from localcluster.prometheus import PrometheusServer, ScrapeJob

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = os.environ.get("DEMO_NAMESPACE", "models")
KUBECTL = str(controlplane.BIN_DIR / "current" / "kubectl")
ENV = {**os.environ, "KUBECONFIG": str(controlplane.KUBECONFIG)}
LOGS = controlplane.STATE_DIR / "logs"
REPORT = REPO / "reports" / "demo-report.md"
TERMINAL = {"Succeeded", "RolledBack", "Aborted", "Failed"}


@dataclass
class Outcome:
    version: str
    result: str
    duration_s: float
    time_to_rollback_s: float | None
    checks: int
    failed_checks: int
    message: str


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, env=ENV, timeout=60)
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def start_operator(prometheus_url: str) -> subprocess.Popen[bytes]:
    LOGS.mkdir(parents=True, exist_ok=True)
    with open(LOGS / "operator.log", "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "modelrollout", "--namespace", NAMESPACE,
                                 "--prometheus-url", prometheus_url, "--metrics-port", "0", "--health-endpoint", ""],
                                stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO, start_new_session=True)


def progress_line(status: dict[str, Any]) -> str:
    checks = status.get("analysis", {}).get("lastChecks", [])
    verdicts = "  ".join(
        f"{c['metric']}={'-' if c.get('value') is None else format(c['value'], '.3g')}({c['verdict']})"
        for c in checks) or "no analysis yet"
    return (f"phase={status.get('phase', '-'):<11} weight={status.get('candidateWeight', 0):>3}% "
            f"step={status.get('stepIndex', 0)}  {verdicts}\n           {status.get('message', '')}")


def follow(name: str, version: str, deadline_s: float) -> Outcome:
    """Print every change of the rollout until the revision for this version ends."""
    started = time.monotonic()
    first_failure: float | None = None
    last_line = ""
    status: dict[str, Any] = {}
    checks_seen: set[str] = set()
    failed_seen: set[str] = set()
    while time.monotonic() - started < deadline_s:
        status = json.loads(kubectl("get", "mro", name, "-n", NAMESPACE, "-o", "json")).get("status") or {}
        if status.get("candidateVersion") == version:
            for check in status.get("analysis", {}).get("lastChecks", []):
                key = f"{check['metric']}@{check.get('at')}"
                checks_seen.add(key)
                if check["verdict"] == "Fail":
                    failed_seen.add(key)
                    first_failure = first_failure or time.monotonic()
            line = progress_line(status)
            if line != last_line:
                print(f"  [{time.monotonic() - started:5.1f}s] {line}", flush=True)
                last_line = line
            if status.get("phase") in TERMINAL:
                break
        time.sleep(0.5)
    rolled_back = status.get("phase") in {"RolledBack", "Aborted"}
    return Outcome(version=version, result=str(status.get("phase", "unknown")),
                   duration_s=time.monotonic() - started,
                   time_to_rollback_s=(time.monotonic() - first_failure) if rolled_back and first_failure else None,
                   checks=len(checks_seen), failed_checks=len(failed_seen), message=str(status.get("message", "")))


def rollout_manifest(version: str) -> str:
    obj = yaml.safe_load((REPO / "examples" / "modelrollout.yaml").read_text())
    obj["spec"]["candidate"] = {"modelUri": f"file:///models/digits/{version}", "version": version}
    obj["spec"]["strategy"]["canary"]["steps"] = [
        {"setWeight": 10}, {"pause": {"duration": "6s"}}, {"setWeight": 50}, {"analysis": {}},
        {"pause": {"duration": "6s"}}, {"setWeight": 100}]
    obj["spec"]["analysis"].update(interval="3s", minRequests=10)
    for metric in obj["spec"]["analysis"]["metrics"]:
        metric["window"] = "6s"
    return yaml.safe_dump(obj)


def summary(outcomes: list[Outcome]) -> str:
    rows = ["| candidate | result | duration | time to rollback | checks (failed) | last message |",
            "| --- | --- | --- | --- | --- | --- |"]
    for o in outcomes:
        rollback = f"{o.time_to_rollback_s:.1f}s" if o.time_to_rollback_s is not None else "-"
        rows.append(f"| {o.version} | {o.result} | {o.duration_s:.1f}s | {rollback} | {o.checks} ({o.failed_checks}) "
                    f"| {o.message} |")
    return "\n".join(rows)


def main() -> int:
    print(f"==> namespace {NAMESPACE}")
    kubectl("create", "namespace", NAMESPACE, check=False)
    exporter = ExecutorExporter().start()
    prometheus = PrometheusServer(controlplane.STATE_DIR / "prometheus-demo",
                                  [ScrapeJob("seldon-executor", [exporter.address])]).start()
    print(f"==> Prometheus {prometheus.url} scraping the executor metrics at {exporter.address} every 1s")
    operator = start_operator(prometheus.url)
    print(f"==> operator started (pid {operator.pid}, log {LOGS / 'operator.log'})")
    outcomes: list[Outcome] = []
    try:
        kubectl("delete", "mro", "digits", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
        kubectl("delete", "sdep", "digits", "-n", NAMESPACE, "--ignore-not-found", "--wait=true")
        kubectl("apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / "seldondeployment.yaml"))
        print("==> SeldonDeployment digits serves 1.0.0 on predictor main")
        healthy = Traffic(rps=50, error_ratio=0.0, latency_s=0.03)
        exporter.set(NAMESPACE, "digits", "main", healthy)
        for version, traffic, story in (
            ("2.0.0", healthy, "healthy candidate: expect promotion"),
            ("2.1.0", Traffic(rps=50, error_ratio=0.12, latency_s=0.03), "12% of its requests fail: expect rollback"),
        ):
            exporter.set(NAMESPACE, "digits", "main-candidate", traffic)
            print(f"\n==> ModelRollout digits -> {version} ({story})")
            kubectl("apply", "-n", NAMESPACE, "-f", "-", stdin=rollout_manifest(version))
            outcomes.append(follow("digits", version, deadline_s=120))
        print("\n==> kubectl get mro -o wide")
        print(kubectl("get", "mro", "-n", NAMESPACE, "-o", "wide"))
        table = summary(outcomes)
        print(table)
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(f"# modelrollout demo report\n\n{time.strftime('%Y-%m-%d %H:%M:%S')}, "
                          f"namespace {NAMESPACE}\n\n{table}\n")
        print(f"\nreport written to {REPORT.relative_to(REPO)}")
        expected = ["Succeeded", "RolledBack"]
        return 0 if [o.result for o in outcomes] == expected else 1
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            operator.kill()
        prometheus.stop()
        exporter.stop()


if __name__ == "__main__":
    sys.exit(main())
