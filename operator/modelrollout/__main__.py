"""Entry point: ``modelrollout-operator`` or ``python -m modelrollout``."""

from __future__ import annotations

import argparse
import os
import sys

import kopf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="modelrollout-operator",
        description="Run the modelrollout operator against the current kubeconfig (or in-cluster config).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable); default: all namespaces")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    parser.add_argument("--prometheus-url", default=os.environ.get("MODELROLLOUT_PROMETHEUS_URL",
                                                                   "http://127.0.0.1:9090"),
                        help="Prometheus used when a rollout names none (env MODELROLLOUT_PROMETHEUS_URL)")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("MODELROLLOUT_METRICS_PORT", "8000")),
                        help="port of the operator's own Prometheus metrics; 0 disables them")
    parser.add_argument("--health-endpoint", default=os.environ.get("MODELROLLOUT_HEALTH_ENDPOINT",
                                                                    "http://0.0.0.0:8080/healthz"),
                        help="liveness endpoint served by Kopf; empty disables it")
    parser.add_argument("--peering", default=os.environ.get("MODELROLLOUT_PEERING", ""),
                        help="Kopf peering name for high availability; empty runs standalone")
    parser.add_argument("--concurrency", type=int, default=16, help="rollouts that may tick at the same time")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from . import handlers  # registers the handlers with Kopf

    handlers.CONFIG.prometheus_url = args.prometheus_url
    handlers.CONFIG.metrics_port = args.metrics_port
    handlers.CONFIG.concurrency = args.concurrency
    kopf.configure(verbose=args.verbose)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=not args.peering,
        peering_name=args.peering or None,
        liveness_endpoint=args.health_endpoint or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
