"""Benchmark: the local data plane under Locust, through the ingress and straight to the model server.

    .venv/bin/python -m loadtests.bench_dataplane [--users 8] [--seconds 30] [--split]

One SeldonDeployment digits with predictor main (1.0.0), or with --split main and a 2.0.0 predictor at
50/50. Locust (loadtests/model_server_locustfile.py, batches of 8, users back to back) runs for
--seconds through the ingress, then for --seconds against main's model server directly. Prints
requests/s, p50/p99 latency and failures of both, and the ingress/direct ratios. Figures only: nothing
is asserted. Needs `make cluster-up` (reuses that cluster and its data plane).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testkit import faults  # noqa: E402
from testkit.locust import Locust, LocustStats  # noqa: E402
from testkit.rollouts import model_uri  # noqa: E402
from testkit.scenario import Scenario  # noqa: E402
from testkit.seldon import digits_sdep  # noqa: E402

LOCUSTFILE = REPO / "loadtests" / "model_server_locustfile.py"


def run_locust(sc: Scenario, host: str, path: str, users: int, seconds: int, label: str) -> LocustStats:
    locust = Locust(host, sc.namespace, sc.workdir / label, users=users, duration_s=seconds, locustfile=LOCUSTFILE,
                    env={"MODEL_LOAD_PATH": path, "MODEL_LOAD_BATCH": "8", "MODEL_LOAD_WAIT_MS": "0"}).start()
    sc.cleanups.append(locust.stop)
    locust.wait(timeout=seconds + 30)  # -t bounds it; stop() if it overruns
    return locust.stats()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--split", action="store_true", help="main 1.0.0 and candidate 2.0.0 at 50/50")
    args = parser.parse_args()
    users, seconds = max(1, min(args.users, 64)), max(5, min(args.seconds, 120))
    with Scenario("data plane benchmark", prefix="bench") as sc:
        sdep = digits_sdep("1.0.0")
        if args.split:
            main_predictor = sdep["spec"]["predictors"][0]
            main_predictor["traffic"] = 50
            other = copy.deepcopy(main_predictor)
            other.update(name="main-candidate", traffic=50)
            other["graph"]["modelUri"] = model_uri("2.0.0")
            sdep["spec"]["predictors"].append(other)
        sc.deploy(sdep)
        server = faults.wait_ready_server(sc.services.ingress_url, sc.namespace, "digits", "main")
        ingress_path = f"/seldon/{sc.namespace}/digits/api/v1.0/predictions"
        through = run_locust(sc, sc.services.ingress_url, ingress_path, users, seconds, "ingress")
        direct = run_locust(sc, f"http://127.0.0.1:{server['httpPort']}", "/api/v1.0/predictions", users, seconds,
                            "direct")
    shape = "main 1.0.0 + candidate 2.0.0 at 50/50" if args.split else "one predictor (main 1.0.0)"
    print(f"\nData plane: {shape}; Locust {users} users back to back, batches of 8, {seconds}s per run\n")
    print(f"{'path':<22} {'requests':>9} {'failures':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for name, stats in (("through the ingress", through), ("direct to main", direct)):
        print(f"{name:<22} {stats.requests:>9} {stats.failures:>9} {stats.rps:>8.1f} {stats.p50_ms:>7.0f} "
              f"{stats.p99_ms:>7.0f}")
    if direct.rps and direct.p50_ms and direct.p99_ms:
        print(f"{'ratio ingress/direct':<22} {'':>9} {'':>9} {through.rps / direct.rps:>8.2f} "
              f"{through.p50_ms / direct.p50_ms:>7.2f} {through.p99_ms / direct.p99_ms:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
