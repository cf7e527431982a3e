"""Chaos: restart the kube-apiserver in the middle of a rollout.

    .venv/bin/python -m chaos.apiserver_restart --i-know

It restarts the SHARED local API server (``python -m localcluster.controlplane restart-apiserver``):
everyone using the local cluster sees it go away for a few seconds, so the script refuses to run
without --i-know. Run it standalone, never alongside other tests.

Good candidate 2.0.0 under Locust, steps 20% / pause 8 s / 50% / pause 8 s / 100%. When the candidate
is at 20% the API server is restarted. Invariants:
  - the data plane keeps serving during the restart (it routes from memory): no Locust failures
    before the promotion;
  - the operator and the data plane reconnect: the rollout ends Succeeded with the same revision,
    stepIndex never went back, and the data plane applied the later traffic changes (main runs 2.0.0).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from testkit import REPO, faults
from testkit.rollouts import LIVE_ANALYSIS, model_rollout, model_uri
from testkit.scenario import Scenario, run_scenario
from testkit.seldon import traffic
from testkit.waiting import wait_for

STEPS = [{"setWeight": 20}, {"pause": {"duration": "8s"}}, {"setWeight": 50}, {"pause": {"duration": "8s"}},
         {"setWeight": 100}]


def run(sc: Scenario) -> None:
    sc.deploy()
    locust = sc.start_locust(users=4, duration_s=180)
    sc.wait_traffic(timeout=40)
    sc.start_operator()
    mro = sc.start_rollout(model_rollout("2.0.0", STEPS, analysis=LIVE_ANALYSIS, name="digits-apiserver"))
    before = mro.wait(lambda s: s.get("candidateWeight") == 20 and s.get("stepIndex") == 1,
                      "candidate at 20% in the pause", timeout=60)
    print("  restarting the kube-apiserver", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "localcluster.controlplane", "restart-apiserver"], cwd=REPO, check=True,
                   timeout=180)
    wait_for(lambda: sc.kube.run("get", "--raw", "/readyz", check=False).returncode == 0, "the API server ready",
             timeout=120, interval=0.5)
    print(f"  API server back after {time.monotonic() - started:.1f}s", flush=True)
    status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=150)
    sc.check("Succeeded, same revision", status["phase"] == "Succeeded" and status["revision"] == before["revision"],
             f"{status['phase']} revision {status['revision']}")
    steps = [s.step for s in mro.samples if s.revision == before["revision"]]
    sc.check("stepIndex never went back", steps == sorted(steps), str(steps))
    sc.check("SeldonDeployment all on main", traffic(sc.kube, sc.namespace) == {"main": 100})
    servers = wait_for(lambda: (lambda s: s if s and all(x["ready"] for x in s) else None)(
        faults.servers(sc.services.ingress_url, sc.namespace)), "the data plane to settle", timeout=60)
    sc.check("the data plane followed the changes made after the restart (main runs 2.0.0 alone)",
             [(s["predictor"], s["modelUri"]) for s in servers] == [("main", model_uri("2.0.0"))], str(servers))
    sc.check_no_failures_before_promotion(mro, locust, "users saw no failures while the API server restarted")
    print(mro.timeline(), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--i-know", action="store_true",
                        help="confirm: this restarts the shared API server for everyone using the local cluster")
    args = parser.parse_args()
    if not args.i_know:
        print("refusing: this restarts the SHARED kube-apiserver; run it standalone with --i-know", file=sys.stderr)
        return 2
    return run_scenario("API server restart mid-rollout", run,
                        errors=(AssertionError, subprocess.SubprocessError))


if __name__ == "__main__":
    sys.exit(main())
