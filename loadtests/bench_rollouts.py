"""Benchmark: what users see during bad and good rollouts, on the local cluster under Locust.

    .venv/bin/python -m loadtests.bench_rollouts [--interval 3] [--users 4] [--error-rate 0.1]

Three rollouts, each in a namespace of its own with Locust through the ingress and the operator as a
process: a candidate with --error-rate 503s, one with +200 ms latency (both injected through the model
server's admin API as soon as it is ready, held at 50% by an indefinite pause), and a good one
(20% / pause / 50% / pause / 100%). Prints a table:

- time to rollback: from the fault's start to candidate weight 0 (status), in seconds and intervals;
- blast radius: failed responses users got (Locust) as a share of all requests from the rollout's
  start to its end, and bad predictions (5xx or slower than --slow-ms, from the ingress histogram in
  Prometheus) as a share of all predictions in the same window;
- for the good rollout the same shares, before the promotion and including it.
Figures only: nothing is asserted. Needs `make cluster-up`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit.locust import Locust  # noqa: E402
from testkit.prometheus import prom_value  # noqa: E402
from testkit.rollouts import LIVE_ANALYSIS, model_rollout  # noqa: E402
from testkit.scenario import Scenario  # noqa: E402
from testkit.waiting import wait_for  # noqa: E402

HOLD = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]
GOOD = [{"setWeight": 20}, {"pause": {"duration": "9s"}}, {"setWeight": 50}, {"pause": {"duration": "9s"}},
        {"setWeight": 100}]
SLOW_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


@dataclass
class Row:
    name: str
    result: str
    rollback_s: float | None
    interval_s: float
    requests: int
    failures: int
    predictions: float
    bad_predictions: float
    note: str = ""


def bad_predictions(sc: Scenario, start: float, end: float, slow_s: float) -> tuple[float, float]:
    """(all, bad) predictions of the namespace between two unix times, from the ingress histogram."""
    window = f"{max(1, round(end - start))}s"
    selector = f'namespace="{sc.namespace}",service="predictions"'
    metric = "seldon_api_executor_server_requests_seconds"
    at = f"@ {end:.3f}"
    total = prom_value(sc.services.prometheus_url, f"sum(increase({metric}_count{{{selector}}}[{window}] {at}))") or 0
    fast_ok = prom_value(sc.services.prometheus_url, f'sum(increase({metric}_bucket{{{selector},code!~"5..",'
                                                     f'le="{slow_s:g}"}}[{window}] {at}))') or 0
    return total, max(0.0, total - fast_ok)


def wait_settled(sc: Scenario, locust: Locust, moment: float) -> None:
    """Until the figures up to a unix time are in: Locust's history has a row after it (or Locust ended) and
    Prometheus has scraped the namespace's executors after it."""
    scraped = f'max(timestamp(up{{job="seldon-executors",namespace="{sc.namespace}"}}))'
    wait_for(lambda: (not locust.running() or any(t >= moment for t, _, _ in locust.history()))
             and (prom_value(sc.services.prometheus_url, scraped) or 0.0) >= moment,
             f"Locust's history and Prometheus past {moment:.0f}", timeout=15, interval=0.25)


def bad_rollout(name: str, knobs: dict[str, Any], interval: float, users: int, slow_s: float,
                metrics: list[dict[str, Any]]) -> Row:
    with Scenario(f"bad rollout: {name}", prefix="bench") as sc:
        sc.deploy()
        locust = sc.start_locust(users=users, duration_s=150)
        sc.wait_traffic(timeout=40)
        sc.start_operator()
        armer = sc.arm_faults(**knobs)
        mro = sc.start_rollout(model_rollout("2.0.0", HOLD, analysis=LIVE_ANALYSIS, name="digits-bad",
                                             interval=f"{interval:g}s", metrics=metrics, minRequests=10))
        status = mro.wait_phase("RolledBack", "Succeeded", "Failed", timeout=120)
        injected = armer.wait_injected(timeout=5)
        back = mro.first(lambda s: s.phase == "RolledBack" and s.weight == 0)
        start, end = mro.samples[0].wall, (back.wall if back else time.time())
        wait_settled(sc, locust, end + 1)
        requests, failures = locust.counts_between(start, end + 1)
        predictions, bad = bad_predictions(sc, start, end, slow_s)
        took = (back.t - injected) if back else None
        return Row(name, status["phase"], took, interval, requests, failures, predictions, bad)


def good_rollout(interval: float, users: int, slow_s: float) -> list[Row]:
    with Scenario("good rollout", prefix="bench") as sc:
        sc.deploy()
        locust = sc.start_locust(users=users, duration_s=150)
        sc.wait_traffic(timeout=40)
        sc.start_operator()
        mro = sc.start_rollout(model_rollout("2.0.0", GOOD, analysis=LIVE_ANALYSIS, name="digits-good",
                                             interval=f"{interval:g}s"))
        status = mro.wait_phase("Succeeded", "RolledBack", "Failed", timeout=150)
        promoting = mro.first(lambda s: s.phase in ("Promoting", "Succeeded"))
        start = mro.samples[0].wall
        before = (promoting.wall - 1) if promoting else time.time()
        # The promotion swaps main's model: wait until the data plane serves from main again.
        wait_for(lambda: (lambda s: s and all(x["ready"] for x in s) and len(s) == 1)(sc.servers()),
                 "main ready after the promotion", timeout=60)
        end = time.time() + 1
        wait_settled(sc, locust, end)
        rows = []
        for label, stop in (("good: until promotion", before), ("good: incl. promotion", end)):
            requests, failures = locust.counts_between(start, stop)
            predictions, bad = bad_predictions(sc, start, stop, slow_s)
            rows.append(Row(label, status["phase"], None, interval, requests, failures, predictions, bad))
        return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=3.0, help="analysis interval, seconds")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--error-rate", type=float, default=0.1)
    parser.add_argument("--slow-ms", type=float, default=100.0, help="a prediction slower than this is degraded "
                        f"(one of the histogram buckets {', '.join(f'{b * 1000:g}' for b in SLOW_BUCKETS)})")
    args = parser.parse_args()
    slow_s = min(SLOW_BUCKETS, key=lambda b: abs(b - args.slow_ms / 1000))
    interval, users = max(1.0, min(args.interval, 30.0)), max(1, min(args.users, 32))
    window = f"{max(2, round(2.5 * interval))}s"
    rows = [
        bad_rollout(f"{args.error_rate:.0%} errors", {"error_rate": args.error_rate, "error_status": 503}, interval,
                    users, slow_s, [{"name": "success-rate", "template": "request-success-rate", "min": 0.99,
                                     "window": window}]),
        bad_rollout("+200 ms latency", {"latency_ms": 200}, interval, users, slow_s,
                    [{"name": "latency-p90", "template": "request-duration-p90", "max": 0.15, "window": window}]),
        *good_rollout(interval, users, slow_s),
    ]
    print(f"\nRollouts under Locust ({users} users), analysis interval {interval:g}s, failureLimit 2, "
          f"degraded = 5xx or slower than {slow_s * 1000:g} ms\n")
    print(f"{'rollout':<24} {'result':<11} {'rollback':>14} {'requests':>9} {'failed':>7} {'failed %':>9} "
          f"{'preds':>7} {'bad preds %':>12}")
    for r in rows:
        rollback = f"{r.rollback_s:.1f}s/{r.rollback_s / r.interval_s:.1f}int" if r.rollback_s is not None else "-"
        failed = 100 * r.failures / r.requests if r.requests else 0.0
        bad = 100 * r.bad_predictions / r.predictions if r.predictions else 0.0
        print(f"{r.name:<24} {r.result:<11} {rollback:>14} {r.requests:>9} {r.failures:>7} {failed:>8.2f}% "
              f"{r.predictions:>7.0f} {bad:>11.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
