"""Entry point: ``modelrollout-operator`` or ``python -m modelrollout``."""

from __future__ import annotations

import argparse
import logging
import os
import re
import socket
import sys
import urllib.parse
from typing import TYPE_CHECKING

import kopf

from .api import SpecError, parse_duration
from .leadership import LeaseTiming

if TYPE_CHECKING:
    from .handlers import OperatorConfig

DEFAULT_SCRAPE_INTERVAL = "30s"  # kube-prometheus-stack's default scrape interval
DEFAULT_STATUS_HEARTBEAT = "60s"


def _duration(text: str, flag: str) -> float:
    try:
        return parse_duration(text.strip(), flag)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _scrape_interval(text: str) -> float:
    """argparse type of --scrape-interval: a duration such as 30s or 1s, in seconds, above zero."""
    seconds = _duration(text, "--scrape-interval")
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above zero")
    return seconds


def _status_heartbeat(text: str) -> float:
    """argparse type of --status-heartbeat: a duration such as 60s or 5m; 0s writes every check."""
    return _duration(text, "--status-heartbeat")


def _prometheus_url(text: str) -> str:
    """argparse type of --allowed-prometheus-url: an absolute http(s) URL."""
    url = text.strip()
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return url


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds above zero")
    return value


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
    parser.add_argument("--namespace-label", default=os.environ.get("MODELROLLOUT_NAMESPACE_LABEL", "namespace"),
                        type=_label_name,
                        help="the label the Prometheus scrape puts a pod's namespace in: namespace (Prometheus "
                             "Operator PodMonitor, the default) or kubernetes_namespace (Seldon's analytics "
                             "chart); env MODELROLLOUT_NAMESPACE_LABEL")
    parser.add_argument("--allowed-prometheus-url", dest="allowed_prometheus_urls", action="append",
                        type=_prometheus_url, default=None, metavar="URL",
                        help="another Prometheus a rollout may name in spec.analysis.prometheus.address "
                             "(repeatable; env MODELROLLOUT_ALLOWED_PROMETHEUS_URLS, comma-separated); "
                             "default: none, only --prometheus-url may be used")
    # A string default goes through `type` too, so a bad environment value is refused like a bad flag.
    parser.add_argument("--scrape-interval", type=_scrape_interval, metavar="DURATION",
                        default=os.environ.get("MODELROLLOUT_SCRAPE_INTERVAL", DEFAULT_SCRAPE_INTERVAL),
                        help="scrape interval of the Prometheus the metrics come from, such as 30s or 1s; query "
                             "windows must hold several scrapes (env MODELROLLOUT_SCRAPE_INTERVAL; default "
                             f"{DEFAULT_SCRAPE_INTERVAL}, kube-prometheus-stack's)")
    parser.add_argument("--metrics-port", type=int, default=int(os.environ.get("MODELROLLOUT_METRICS_PORT", "8000")),
                        help="port of the operator's own Prometheus metrics; 0 disables them")
    parser.add_argument("--health-endpoint", default=os.environ.get("MODELROLLOUT_HEALTH_ENDPOINT",
                                                                    "http://0.0.0.0:8080/healthz"),
                        help="liveness endpoint served by Kopf; empty disables it")
    ha = parser.add_argument_group("high availability (several replicas, one leader through a Lease)")
    ha.add_argument("--leader-election", action="store_true",
                    default=os.environ.get("MODELROLLOUT_LEADER_ELECTION", "") in ("1", "true"),
                    help="only the replica holding the Lease ticks rollouts; the others watch and stand by")
    ha.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"),
                    help="namespace of the Lease (default: $POD_NAMESPACE or default)")
    ha.add_argument("--lease-name", default="modelrollout", help="name of the Lease (default: modelrollout)")
    ha.add_argument("--identity", default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
                    help="this replica's name in the Lease (default: $POD_NAME, else host-pid)")
    ha.add_argument("--lease-duration", type=_positive_seconds, default=15.0, metavar="SECONDS",
                    help="how long others wait after the holder's last renewal before taking over (default 15)")
    ha.add_argument("--renew-deadline", type=_positive_seconds, default=10.0, metavar="SECONDS",
                    help="the holder stops writing this long after its last successful renewal (default 10)")
    ha.add_argument("--retry-period", type=_positive_seconds, default=2.0, metavar="SECONDS",
                    help="how often the Lease is renewed or tried (default 2)")
    parser.add_argument("--concurrency", type=int, default=16, help="rollouts that may tick at the same time")
    parser.add_argument("--provider-workers", type=_positive_int, default=8, metavar="N",
                        help="metric provider queries (Prometheus) that may run at the same time (default 8)")
    parser.add_argument("--kube-workers", type=_positive_int, default=16, metavar="N",
                        help="Kubernetes API requests that may run at the same time (default 16)")
    parser.add_argument("--status-heartbeat", type=_status_heartbeat, metavar="DURATION",
                        default=os.environ.get("MODELROLLOUT_STATUS_HEARTBEAT", DEFAULT_STATUS_HEARTBEAT),
                        help="a check that changes no verdict, streak or phase (a pass after a pass) updates the "
                             "status at most this often; any other change is written at once; 0s writes every "
                             f"check (env MODELROLLOUT_STATUS_HEARTBEAT; default {DEFAULT_STATUS_HEARTBEAT})")
    parser.add_argument("--kube-request-timeout", type=_positive_seconds, default=10.0, metavar="SECONDS",
                        help="timeout of each Kubernetes API request the operator makes, in seconds (default 10)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.allowed_prometheus_urls is None:
        # Flags replace the environment's list rather than adding to it.
        raw = os.environ.get("MODELROLLOUT_ALLOWED_PROMETHEUS_URLS", "")
        try:
            args.allowed_prometheus_urls = [_prometheus_url(u) for u in raw.split(",") if u.strip()]
        except argparse.ArgumentTypeError as exc:
            parser.error(f"MODELROLLOUT_ALLOWED_PROMETHEUS_URLS: {exc}")
    args.allowed_prometheus_urls = tuple(dict.fromkeys(args.allowed_prometheus_urls))
    try:
        LeaseTiming(args.lease_duration, args.renew_deadline, args.retry_period)
    except ValueError as exc:
        parser.error(str(exc))
    if len(args.identity) > 128:
        parser.error("--identity: at most 128 characters")
    return args


def _label_name(text: str) -> str:
    """argparse type of --namespace-label: a Prometheus label name."""
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Prometheus label name")
    return text


def configure(config: OperatorConfig, args: argparse.Namespace) -> None:
    """Copy the parsed flags onto the operator's configuration (handed to the handlers as ``memo.config``)."""
    from .handlers import LeaderElection

    config.prometheus_url = args.prometheus_url
    config.metrics_port = args.metrics_port
    config.concurrency = args.concurrency
    config.scrape_interval_s = args.scrape_interval
    config.allowed_prometheus_urls = args.allowed_prometheus_urls
    config.provider_workers = args.provider_workers
    config.kube_request_timeout_s = args.kube_request_timeout
    config.kube_workers = args.kube_workers
    config.status_heartbeat_s = args.status_heartbeat
    config.namespace_label = args.namespace_label
    if args.leader_election:
        config.leader_election = LeaderElection(
            namespace=args.lease_namespace, name=args.lease_name, identity=args.identity,
            timing=LeaseTiming(lease_duration_s=args.lease_duration, renew_deadline_s=args.renew_deadline,
                               retry_s=args.retry_period))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from . import handlers  # registers the handlers with Kopf

    config = handlers.OperatorConfig()
    configure(config, args)
    kopf.configure(verbose=args.verbose)
    if not args.verbose:
        # Kopf logs every watch event it handled ("Handler 'watch' succeeded"): one line per status write
        # of every rollout, the bulk of the log and of its cost at thousands of rollouts. Warnings stay.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        memo=kopf.Memo(config=config),
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,  # Kopf's peering would pause every replica; the Lease picks the one that ticks
        liveness_endpoint=args.health_endpoint or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
