"""Chaos: SIGKILL the operator again and again during a rollout, restarting it each time.

    .venv/bin/python -m chaos.operator_restart [--kills 3] [--every 5]

Good candidate 2.0.0 under Locust, steps 20% / pause 6 s / 50% / pause 6 s / 100%; the operator is
killed (SIGKILL, no cleanup) --kills times, --every seconds apart, and restarted at once. Invariants:
  - the rollout ends Succeeded with the revision it started with (no restart from scratch);
  - stepIndex never goes back, the candidate weight never exceeds the current step's weight;
  - history holds exactly one entry (Succeeded); users saw no failures before the promotion.
"""

from __future__ import annotations

import argparse
import sys
import time

from testkit.rollouts import LIVE_ANALYSIS, model_rollout
from testkit.scenario import Scenario, run_scenario
from testkit.seldon import traffic

STEPS = [{"setWeight": 20}, {"pause": {"duration": "6s"}}, {"setWeight": 50}, {"pause": {"duration": "6s"}},
         {"setWeight": 100}]


def run(sc: Scenario, kills: int, every: float) -> None:
    sc.deploy()
    locust = sc.start_locust(users=4, duration_s=150)
    sc.wait_traffic(timeout=40)
    operator = sc.start_operator()
    mro = sc.start_rollout(model_rollout("2.0.0", STEPS, analysis=LIVE_ANALYSIS, name="digits-restarts"))
    first = mro.wait(lambda s: s.get("revision", 0) >= 1, "revision 1 started", timeout=30)
    for n in range(kills):
        time.sleep(every)
        if mro.status().get("phase") in ("Succeeded", "RolledBack", "Failed"):
            break
        operator.kill()
        status = mro.status()
        print(f"  kill {n + 1}: phase {status.get('phase')}, step {status.get('stepIndex')}, weight "
              f"{status.get('candidateWeight')}", flush=True)
        operator.start()
    status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=120)
    sc.check("Succeeded, same revision", status["phase"] == "Succeeded" and status["revision"] == first["revision"],
             f"{status['phase']} revision {status['revision']}")
    steps = [s.step for s in mro.samples if s.revision == first["revision"]]
    sc.check("stepIndex never went back", steps == sorted(steps), str(steps))
    allowed = {0: 20, 1: 20, 2: 50, 3: 50, 4: 100, 5: 100}
    sc.check("candidate weight never above its step's", all(s.weight <= allowed[s.step] for s in mro.samples
                                                            if s.revision == first["revision"]))
    sc.check("one history entry", [h["result"] for h in status.get("history", [])] == ["Succeeded"],
             str(status.get("history")))
    sc.check("traffic all on main (2.0.0)", traffic(sc.kube, sc.namespace) == {"main": 100})
    sc.check_no_failures_before_promotion(mro, locust, "no user-facing failures before the promotion")
    print(mro.timeline(), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--every", type=float, default=5.0)
    args = parser.parse_args()
    kills, every = max(1, min(args.kills, 10)), max(1.0, min(args.every, 30.0))
    return run_scenario("operator restarts mid-rollout", lambda sc: run(sc, kills, every))


if __name__ == "__main__":
    sys.exit(main())
