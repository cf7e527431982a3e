"""Benchmark: how fast the operator reacts, on the local cluster with a real Prometheus.

Prints, over several rollouts:
- reaction time: from `create ModelRollout` to the first change of the SeldonDeployment's traffic;
- rollback time: from the first failing verdict on status to the candidate's weight reaching 0,
  in seconds and in analysis intervals.

    .venv/bin/python -m loadtests.bench_reaction [--runs 5] [--interval 2s]

Needs `make cluster-up` (it reuses that cluster). Figures are medians of one run on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modelrollout.api import parse_duration  # noqa: E402

from localcluster import controlplane  # noqa: E402
from localcluster.executor_exporter import ExecutorExporter, Traffic  # noqa: E402
from localcluster.prometheus import PrometheusServer  # noqa: E402

SDEP = yaml.safe_load((REPO / "examples" / "seldondeployment.yaml").read_text())
# Metrics come from the synthetic exporter: the local data plane need not serve these deployments.
SDEP["metadata"]["annotations"] = {"localcluster.modelrollout.dev/serve": "false"}
POLL_S = 0.02


def rollout(name: str, interval: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "ModelRollout", "metadata": {"name": name},
            "spec": {"targetRef": {"kind": "SeldonDeployment", "name": "digits"}, "stablePredictor": "main",
                     "candidate": {"modelUri": "file:///models/digits/2.0.0", "version": "2.0.0"},
                     "strategy": {"canary": {"steps": steps}},
                     "analysis": {"interval": interval, "failureLimit": 2, "inconclusiveLimit": 3, "minRequests": 5,
                                  "metrics": [{"name": "success-rate", "template": "request-success-rate",
                                               "min": 0.95, "window": "4s"}]}}}


def candidate_traffic(api: client.CustomObjectsApi, namespace: str) -> int | None:
    sdep: Any = api.get_namespaced_custom_object("machinelearning.seldon.io", "v1", namespace, "seldondeployments",
                                                 "digits")
    return next((int(p.get("traffic", 0)) for p in sdep["spec"]["predictors"] if p["name"] == "main-candidate"), None)


def wait(predicate: Any, deadline_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if predicate():
            return time.monotonic()
        time.sleep(POLL_S)
    raise TimeoutError(f"timed out waiting for {what}")


created: list[str] = []


def cleanup(api: client.CustomObjectsApi, namespace: str) -> None:
    """Delete what a run created (the local data plane would otherwise keep serving it)."""
    for group, version, plural in (("modelrollout.dev", "v1alpha1", "modelrollouts"),
                                   ("machinelearning.seldon.io", "v1", "seldondeployments")):
        for obj in api.list_namespaced_custom_object(group, version, namespace, plural).get("items", []):
            api.delete_namespaced_custom_object(group, version, namespace, plural, obj["metadata"]["name"])


def fresh_namespace(core: client.CoreV1Api, api: client.CustomObjectsApi) -> str:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    created.append(namespace)
    core.create_namespace({"metadata": {"name": namespace}})
    api.create_namespaced_custom_object("machinelearning.seldon.io", "v1", namespace, "seldondeployments", SDEP)
    return namespace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", default="2s")
    args = parser.parse_args()
    interval_s = parse_duration(args.interval)

    controlplane.up()
    config.load_kube_config(str(controlplane.KUBECONFIG))
    api, core = client.CustomObjectsApi(), client.CoreV1Api()
    workdir = Path(tempfile.mkdtemp(prefix="bench-prometheus-"))
    exporter = ExecutorExporter(workdir / "executors.json").start()
    prometheus = PrometheusServer(workdir, [exporter.scrape_job()]).start()
    log = open(workdir / "operator.log", "ab")  # noqa: SIM115
    operator = subprocess.Popen([sys.executable, "-m", "modelrollout", "--prometheus-url", prometheus.url,
                                 "--metrics-port", "0", "--health-endpoint", ""], stdout=log, stderr=log,
                                env={"KUBECONFIG": str(controlplane.KUBECONFIG), "PATH": "/usr/bin:/bin"}, cwd=REPO)
    reactions: list[float] = []
    rollbacks: list[float] = []
    try:
        for run in range(args.runs):
            # Reaction: apply → first traffic change.
            namespace = fresh_namespace(core, api)
            exporter.set(namespace, "digits", "main-candidate", Traffic(rps=40))
            started = time.monotonic()
            api.create_namespaced_custom_object("modelrollout.dev", "v1alpha1", namespace, "modelrollouts",
                                                rollout("fast", args.interval, [{"setWeight": 10}, {"pause": {}}]))
            reactions.append(wait(lambda ns=namespace: candidate_traffic(api, ns), 30, "first weight") - started)

            # Rollback: first failing verdict on status → candidate weight 0.
            namespace = fresh_namespace(core, api)
            exporter.set(namespace, "digits", "main-candidate", Traffic(rps=40, error_ratio=0.3))
            api.create_namespaced_custom_object("modelrollout.dev", "v1alpha1", namespace, "modelrollouts",
                                                rollout("bad", args.interval, [{"setWeight": 20}, {"pause": {}}]))

            def failed(ns: str = namespace) -> bool:
                obj: Any = api.get_namespaced_custom_object("modelrollout.dev", "v1alpha1", ns, "modelrollouts", "bad")
                checks = (obj.get("status") or {}).get("analysis", {}).get("lastChecks", [])
                return any(c.get("verdict") == "Fail" for c in checks)

            first_fail = wait(failed, 60, "a failing verdict")
            gone = wait(lambda ns=namespace: not candidate_traffic(api, ns), 60, "candidate weight 0")
            rollbacks.append(gone - first_fail)
            for ns in created[-2:]:  # this run's two namespaces
                cleanup(api, ns)
            print(f"run {run + 1}: reaction {reactions[-1]:.2f}s, failing verdict → weight 0 {rollbacks[-1]:.2f}s",
                  flush=True)
    finally:
        operator.terminate()
        operator.wait(timeout=20)
        prometheus.stop()
        exporter.stop()
    print(f"\nreaction time, apply → first weight change: median {statistics.median(reactions):.2f}s "
          f"(min {min(reactions):.2f}s, max {max(reactions):.2f}s, n={len(reactions)})")
    median_rb = statistics.median(rollbacks)
    print(f"rollback time, first failing verdict → weight 0: median {median_rb:.2f}s = "
          f"{median_rb / interval_s:.2f} analysis intervals of {args.interval} "
          f"(failureLimit 2: the second failing check triggers it; min {min(rollbacks):.2f}s, "
          f"max {max(rollbacks):.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
