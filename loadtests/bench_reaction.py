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
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client, config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from modelrollout.api import parse_duration  # noqa: E402

from localcluster import controlplane  # noqa: E402
from localcluster.executor_exporter import ExecutorExporter, Traffic  # noqa: E402
from localcluster.prometheus import PrometheusServer  # noqa: E402
from testkit.kube import Kube  # noqa: E402
from testkit.processes import OperatorProcess  # noqa: E402
from testkit.rollouts import EXPORTER_ANALYSIS, model_rollout  # noqa: E402
from testkit.seldon import digits_sdep  # noqa: E402
from testkit.waiting import wait_for  # noqa: E402

# Metrics come from the synthetic exporter: the local data plane need not serve these deployments.
SDEP = digits_sdep("1.0.0", served=False)
POLL_S = 0.02


def candidate_traffic(api: client.CustomObjectsApi, namespace: str) -> int | None:
    sdep: Any = api.get_namespaced_custom_object("machinelearning.seldon.io", "v1", namespace, "seldondeployments",
                                                 "digits")
    return next((int(p.get("traffic", 0)) for p in sdep["spec"]["predictors"] if p["name"] == "main-candidate"), None)


def wait(predicate: Callable[[], Any], deadline_s: float, what: str) -> float:
    """Until predicate holds; the monotonic time it was seen to."""
    wait_for(predicate, what, timeout=deadline_s, interval=POLL_S)
    return time.monotonic()


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
    # Judged on the success rate alone, every --interval.
    analysis = {**EXPORTER_ANALYSIS, "interval": args.interval, "metrics": EXPORTER_ANALYSIS["metrics"][:1]}

    controlplane.up()
    config.load_kube_config(str(controlplane.KUBECONFIG))
    api, core = client.CustomObjectsApi(), client.CoreV1Api()
    workdir = Path(tempfile.mkdtemp(prefix="bench-prometheus-"))
    exporter = ExecutorExporter(workdir / "executors.json").start()
    prometheus = PrometheusServer(workdir, [exporter.scrape_job()]).start()
    operator = OperatorProcess(Kube.local(), workdir / "operator.log",
                               extra_args=("--prometheus-url", prometheus.url)).start()
    reactions: list[float] = []
    rollbacks: list[float] = []
    try:
        for run in range(args.runs):
            # Reaction: apply → first traffic change.
            namespace = fresh_namespace(core, api)
            exporter.set(namespace, "digits", "main-candidate", Traffic(rps=40))
            started = time.monotonic()
            api.create_namespaced_custom_object("modelrollout.dev", "v1alpha1", namespace, "modelrollouts",
                                                model_rollout(steps=[{"setWeight": 10}, {"pause": {}}], name="fast",
                                                              analysis=analysis))
            reactions.append(wait(lambda ns=namespace: candidate_traffic(api, ns), 30, "first weight") - started)

            # Rollback: first failing verdict on status → candidate weight 0.
            namespace = fresh_namespace(core, api)
            exporter.set(namespace, "digits", "main-candidate", Traffic(rps=40, error_ratio=0.3))
            api.create_namespaced_custom_object("modelrollout.dev", "v1alpha1", namespace, "modelrollouts",
                                                model_rollout(steps=[{"setWeight": 20}, {"pause": {}}], name="bad",
                                                              analysis=analysis))

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
        operator.stop(timeout=20)
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
