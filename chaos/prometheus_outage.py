"""Chaos: the operator's Prometheus goes away in the middle of a rollout.

    .venv/bin/python -m chaos.prometheus_outage [--outage-s 6]     # short: the rollout goes on
    .venv/bin/python -m chaos.prometheus_outage --outage-s 60      # long: rolled back, never promoted

A private Prometheus scrapes the ingress every second; the operator uses only it. With good candidate
2.0.0 at 50% (pause 24 s, then 100%), the Prometheus is stopped for --outage-s seconds, then started
again on the same port. Invariants:
  - while it is down the rollout is never promoted (no Promoting/Succeeded);
  - an outage shorter than inconclusiveLimit x interval: the rollout resumes and succeeds afterwards;
  - a longer one: rolled back (AnalysisInconclusive), traffic back on main, stable model unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from localcluster.prometheus import PrometheusServer, dataplane_jobs
from testkit.rollouts import LIVE_ANALYSIS, model_rollout, model_uri
from testkit.scenario import Scenario, run_scenario
from testkit.seldon import traffic
from testkit.waiting import wait_for

INTERVAL_S, INCONCLUSIVE_LIMIT = 3.0, 5


def run(sc: Scenario, outage_s: float) -> None:
    jobs = dataplane_jobs(f"127.0.0.1:{sc.services.ingress_port}")
    private = PrometheusServer(sc.workdir / "prometheus", jobs, scrape_interval="1s").start()
    sc.cleanups.append(lambda: private.stop())
    sc.deploy()  # first: the executors' targets list only namespaces with a SeldonDeployment
    wait_for(lambda: private.query(f'up{{job="seldon-executors",namespace="{sc.namespace}"}} == 1'),
             "the private Prometheus to scrape", timeout=30)
    sc.start_locust(users=4, duration_s=150)
    sc.wait_traffic(timeout=40)
    sc.start_operator(prometheus_url=private.url)
    steps = [{"setWeight": 50}, {"pause": {"duration": "24s"}}, {"setWeight": 100}]
    mro = sc.start_rollout(model_rollout("2.0.0", steps, analysis=LIVE_ANALYSIS, name="digits-promdown",
                                         inconclusiveLimit=INCONCLUSIVE_LIMIT))
    mro.wait(lambda s: s.get("candidateWeight") == 50 and any(
        c["verdict"] == "Pass" for c in (s.get("analysis") or {}).get("lastChecks", [])),
        "candidate at 50% with a passing check", timeout=60)
    print(f"  stopping Prometheus for {outage_s:.0f}s", flush=True)
    private.stop()
    down_at = time.monotonic()
    limit_s = INCONCLUSIVE_LIMIT * INTERVAL_S
    with contextlib.suppress(AssertionError):  # the outage lasts --outage-s unless rolled back before
        mro.wait(lambda s: s.get("phase") == "RolledBack", "a rollback during the outage", timeout=outage_s)
    during = [s for s in mro.samples if down_at <= s.t]
    restarted = False
    if mro.status().get("phase") != "RolledBack":
        private = PrometheusServer(sc.workdir / "prometheus", jobs, scrape_interval="1s", port=private.port).start()
        restarted = True
        print("  Prometheus is back", flush=True)
    up_at = time.monotonic()
    sc.check("no promotion while Prometheus was down",
             not any(s.phase in ("Promoting", "Succeeded") for s in during),
             f"phases seen while down: {sorted({s.phase for s in during})}")
    status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=90)
    if outage_s < limit_s - INTERVAL_S:
        sc.check(f"a {outage_s:.0f}s outage (< {limit_s:.0f}s of checks) only delays the rollout: Succeeded",
                 status["phase"] == "Succeeded", status.get("message", ""))
    elif outage_s > limit_s + 2 * INTERVAL_S:
        rolled = mro.first(lambda s: s.phase == "RolledBack")
        sc.check(f"a {outage_s:.0f}s outage rolls back after inconclusiveLimit ({INCONCLUSIVE_LIMIT}) checks",
                 status["phase"] == "RolledBack" and "inconclusive" in status.get("message", "")
                 and rolled is not None and rolled.t <= up_at,
                 f"{status.get('message', '')[:160]}; {(rolled.t - down_at) if rolled else float('nan'):.1f}s after")
        sdep = sc.kube.get("sdep", "digits", sc.namespace)
        sc.check("traffic back on main, stable model unchanged", traffic(sc.kube, sc.namespace) == {"main": 100}
                 and sdep["spec"]["predictors"][0]["graph"]["modelUri"] == model_uri("1.0.0"))
    else:
        sc.check("the rollout ended (outage near the limit: either ending is right)",
                 status["phase"] in ("Succeeded", "RolledBack"), status["phase"])
    print(f"  Prometheus restarted: {restarted}\n{mro.timeline()}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-s", type=float, default=6.0)
    args = parser.parse_args()
    return run_scenario("Prometheus outage mid-rollout", lambda sc: run(sc, min(max(args.outage_s, 1.0), 120.0)))


if __name__ == "__main__":
    sys.exit(main())
