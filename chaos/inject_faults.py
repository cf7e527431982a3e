"""Chaos: latency and errors injected on a predictor through its model server's admin API.

    .venv/bin/python -m chaos.inject_faults [--error-rate 0.2] [--latency-ms 200] [--requests 150]

Deploys digits (main at 1.0.0), measures a clean baseline through the ingress, sets the knobs on main's
server (PUT /faults on its adminPort), measures again, clears them (DELETE /faults) and checks:
  - the injected error share matches the knob (binomial tolerance) and the errors carry the knob's status;
  - the median latency rises by at least the injected latency (minus 10%);
  - after the knobs are cleared, no errors and the latency is back near the baseline;
  - the ingress metrics (what the operator's analysis reads) count the injected 5xx.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys

from testkit import faults
from testkit.prometheus import prom_value
from testkit.scenario import Scenario, run_scenario
from testkit.waiting import wait_for


def measure(sc: Scenario, n: int) -> list[faults.Answer]:
    return [faults.predict(sc.services.ingress_url, sc.namespace, timeout=10) for _ in range(n)]


def run(sc: Scenario, error_rate: float, latency_ms: float, n: int) -> None:
    ingress = sc.services.ingress_url
    sc.deploy()
    server = faults.wait_ready_server(ingress, sc.namespace, "digits", "main")
    baseline = measure(sc, n)
    base_p50 = statistics.median(a.seconds for a in baseline)
    sc.check("baseline: no errors", all(a.status == 200 for a in baseline), f"p50 {base_p50 * 1000:.1f} ms")

    knobs = faults.set_faults(server, error_rate=error_rate, error_status=503, latency_ms=latency_ms)
    print(f"  knobs on main (admin port {server['adminPort']}): {knobs}", flush=True)
    faulted = measure(sc, n)
    errors = [a for a in faulted if a.status != 200]
    share = len(errors) / n
    tolerance = 4 * math.sqrt(error_rate * (1 - error_rate) / n) + 1 / n
    sc.check(f"error share {share:.3f} matches the knob {error_rate} (+-{tolerance:.3f})",
             abs(share - error_rate) <= tolerance and all(a.status == 503 for a in errors),
             f"{len(errors)} of {n}, statuses {sorted({a.status for a in errors})}")
    p50 = statistics.median(a.seconds for a in faulted)
    sc.check(f"median latency rose by the injected {latency_ms:.0f} ms", p50 - base_p50 >= 0.9 * latency_ms / 1000,
             f"p50 {base_p50 * 1000:.1f} -> {p50 * 1000:.1f} ms")
    if error_rate > 0:
        query = (f'sum(seldon_api_executor_server_requests_seconds_count{{namespace="{sc.namespace}",'
                 f'predictor_name="main",code="503"}})')
        # Wait for the scrape that has them all (the first non-empty answer may predate the last 503s).
        counts: list[float] = []
        with contextlib.suppress(AssertionError):
            wait_for(lambda: counts.append(prom_value(sc.services.prometheus_url, query) or 0)
                     or counts[-1] >= len(errors), "every 503 in Prometheus", timeout=15)
        seen = counts[-1] if counts else 0.0
        sc.check("Prometheus counts the injected 503s (what analysis sees)", seen == len(errors),
                 f"{seen:.0f} counted, {len(errors)} served")

    cleared = faults.clear_faults(server)
    after = measure(sc, n)
    after_p50 = statistics.median(a.seconds for a in after)
    sc.check("knobs cleared: no errors, latency back near the baseline",
             not any(cleared[k] for k in ("error_rate", "latency_ms")) and all(a.status == 200 for a in after)
             and after_p50 < base_p50 + 0.5 * latency_ms / 1000 + 0.02,
             f"p50 {after_p50 * 1000:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--error-rate", type=float, default=0.2)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--requests", type=int, default=150)
    args = parser.parse_args()
    requests = max(20, min(args.requests, 2000))
    return run_scenario("inject latency and errors", lambda sc: run(sc, args.error_rate, args.latency_ms, requests))


if __name__ == "__main__":
    sys.exit(main())
