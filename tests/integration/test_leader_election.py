"""High availability with two real operator processes sharing one Lease on the real kube-apiserver.

The leader is frozen mid-rollout (SIGSTOP: a long pause or a partition, the hard case: unlike a killed
process it comes back with its in-flight work). The standby takes the Lease over once it expired; the old
leader wakes while the rollout is still under way, writes nothing, and the new one finishes the rollout.
Who wrote what comes from two records: each replica's log, where its fence notes every write it lets
through (the old leader's must show none after it wakes), and the API server's own: every write carries
the replica's identity as its field manager, and managedFields keeps the time of each manager's last
write to the ModelRollout, its status and the SeldonDeployment.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from localcluster.executor_exporter import ExecutorExporter, Traffic
from localcluster.prometheus import PrometheusServer
from testkit.kube import Kube
from testkit.processes import OperatorProcess
from testkit.rollouts import EXPORTER_ANALYSIS, model_rollout
from testkit.waiting import wait_for
from tests.integration.conftest import Start

GOOD = Traffic(rps=40, error_ratio=0.0, latency_s=0.02)
LEASE_S, RENEW_DEADLINE_S, RETRY_S = 6, 4, 1
STEPS = [{"setWeight": 20}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {"duration": "4s"}},
         {"setWeight": 100}]


def replica(cluster: Kube, namespace: str, prometheus: PrometheusServer, tmp_path: Path, who: str) -> OperatorProcess:
    return OperatorProcess(cluster, tmp_path / f"operator-{who}.log", extra_args=(
        "--namespace", namespace, "--prometheus-url", prometheus.url, "--leader-election",
        "--lease-namespace", namespace, "--identity", who, "--lease-duration", str(LEASE_S),
        "--renew-deadline", str(RENEW_DEADLINE_S), "--retry-period", str(RETRY_S), "--verbose"))


SENDS = "sends a write with"  # logged (debug) by the fence for every write it lets through


def lease(cluster: Kube, namespace: str) -> dict[str, Any]:
    found = cluster.run("get", "lease", "modelrollout", "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    spec: dict[str, Any] = json.loads(found.stdout).get("spec") or {}
    return spec


def last_writes(obj: dict[str, Any]) -> dict[str, dt.datetime]:
    """The time of each field manager's last write to this object (any subresource)."""
    latest: dict[str, dt.datetime] = {}
    for entry in obj["metadata"].get("managedFields") or []:
        at = dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        manager = entry["manager"]
        latest[manager] = max(at, latest.get(manager, at))
    return latest


def test_the_standby_finishes_a_rollout_and_a_frozen_leader_writes_nothing_once_it_wakes(
        cluster: Kube, namespace: str, prometheus: PrometheusServer, exporter: ExecutorExporter,
        deployment: dict[str, Any], start_rollout: Start, tmp_path: Path) -> None:
    exporter.set(namespace, "digits", "main-candidate", GOOD)
    exporter.set(namespace, "digits", "main", GOOD)
    first = replica(cluster, namespace, prometheus, tmp_path, "replica-a").start()
    second: OperatorProcess | None = None
    try:
        wait_for(lambda: lease(cluster, namespace).get("holderIdentity") == "replica-a", "replica-a holds the Lease",
                 timeout=30)
        second = replica(cluster, namespace, prometheus, tmp_path, "replica-b").start()
        rollout = start_rollout(model_rollout(steps=STEPS, analysis=EXPORTER_ANALYSIS))
        rollout.wait(lambda s: s.get("candidateWeight") == 20, "candidate at 20%")
        assert lease(cluster, namespace).get("holderIdentity") == "replica-a"  # b stood by
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGSTOP)  # the leader freezes mid-rollout
        frozen = time.monotonic()
        before_freeze = first.log()
        assert f"replica-a {SENDS}" in before_freeze  # the record of its writes works: it wrote as leader
        taken = wait_for(lambda: (lambda spec: spec if spec.get("holderIdentity") == "replica-b" else None)(
            lease(cluster, namespace)), "replica-b takes the Lease over", timeout=LEASE_S + 15)
        took_over_s = time.monotonic() - frozen
        acquired = dt.datetime.fromisoformat(taken["acquireTime"].replace("Z", "+00:00"))
        # The old leader wakes mid-rollout, its in-flight work and overdue ticks with it: the fence is closed
        # (its claim is older than the renew deadline) and its next look at the Lease shows the new holder.
        os.kill(first.proc.pid, signal.SIGCONT)
        woke = dt.datetime.now(dt.UTC)
        assert rollout.status().get("phase") == "Progressing"  # it wakes with the rollout still under way
        wait_for(lambda: "replica-a stopped leading" in first.log(), "the old leader notices it lost the Lease",
                 timeout=20)
        status = rollout.wait_phase("Succeeded", "RolledBack", "Failed", timeout=90)
        finished_s = time.monotonic() - frozen
        assert status["phase"] == "Succeeded", status
        assert rollout.traffic() == {"main": 100}
        assert lease(cluster, namespace).get("holderIdentity") == "replica-b"
        # Work for whoever leads, after the old leader woke: an action that the leader rejects and clears.
        cluster.run("annotate", "mro", rollout.name, "-n", namespace, "modelrollout.dev/action=abort", "--overwrite")
        wait_for(lambda: "modelrollout.dev/action" not in (cluster.get("mro", rollout.name, namespace)["metadata"]
                                                          .get("annotations") or {}), "the action handled", timeout=30)
        assert rollout.events("ActionRejected")
        mro, sdep = (json.loads(cluster.run("get", kind, name, "-n", namespace, "--show-managed-fields",
                                            "-o", "json").stdout) for kind, name in (("mro", rollout.name),
                                                                                     ("sdep", "digits")))
        for obj in (mro, sdep):
            writes = last_writes(obj)
            assert "replica-b" in writes, writes  # the new leader wrote: the record is not empty
            # The old leader's entry is gone once the new one owns every field it wrote, or dates from before.
            old = writes.get("replica-a")
            assert old is None or old < acquired, (obj["kind"], old, acquired)
        assert woke > acquired
        after_wake = first.log()[len(before_freeze):]
        assert f"replica-a {SENDS}" not in after_wake, after_wake[-2000:]  # not one write even attempted
        print(f"replica-b took the Lease {took_over_s:.1f}s after the leader froze (lease {LEASE_S}s) and "
              f"finished the rollout {finished_s:.1f}s after it")
    finally:
        if first.proc is not None and first.running():
            os.kill(first.proc.pid, signal.SIGCONT)
        first.stop()
        if second is not None:
            second.stop()
