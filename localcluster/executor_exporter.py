"""Synthetic Seldon executor request metrics, with traffic set by the caller.

Used by the integration tests and the reaction benchmark, where metric values must be exactly what the
test says: it stands in for the executors' metrics endpoints, nothing else. The demo and the end-to-end
tests use the real local data plane instead.

It serves what the local data plane's executors serve, in the same shape
(``localcluster.dataplane.routing``): ``seldon_api_executor_server_requests_seconds_{bucket,count,sum}``
with deployment_name, predictor_name, predictor_version, service="predictions", method="post" and code,
in the executor's buckets, per namespace at ``/metrics/<namespace>`` and without a namespace label. It
writes a file_sd targets file with one target per namespace it knows (``watch`` or ``set``), and
``scrape_job`` gives the Prometheus job that relabels the namespace on, as a PodMonitor would. Each
predictor behaves as if it received ``rps`` requests per second with a share ``error_ratio`` of 500s, all
taking ``latency_s``. Counters advance with wall-clock time, so Prometheus sees real rates. With
``buckets=False`` it serves only each histogram's ``_count`` and ``_sum`` (what the success-rate and
request-count queries read): the scale benchmark serves thousands of predictors with it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from localcluster.dataplane.routing import (
    EXECUTOR_CONTAINER,
    EXECUTOR_HELP,
    EXECUTOR_LABELS,
    EXECUTOR_METHOD,
    EXECUTOR_METRIC,
    Histogram,
    render_histograms,
)
from localcluster.prometheus import POD_MONITOR, ScrapeJob, target_group, write_targets

METRIC = EXECUTOR_METRIC
_PATH = re.compile(r"^/metrics/([a-z0-9]([-a-z0-9]*[a-z0-9])?)$")


GRPC_PREDICT = "/seldon.protos.Seldon/Predict"  # the executor's `service` label for a gRPC prediction


@dataclass
class Traffic:
    rps: float = 0.0
    error_ratio: float = 0.0
    latency_s: float = 0.02
    grpc: bool = False  # labelled as the executor labels gRPC: the full method, "unary", gRPC status names


@dataclass
class _Series:
    traffic: Traffic
    version: str = ""
    ok: float = 0.0
    errors: float = 0.0
    seconds: float = 0.0
    updated: float = 0.0


class ExecutorExporter:
    def __init__(self, targets_file: Path, buckets: bool = True) -> None:
        self.targets_file = targets_file
        self.buckets = buckets
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._namespaces: set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def scrape_job(self, name: str = "executor", mode: str = POD_MONITOR) -> ScrapeJob:
        """The Prometheus job for these executors: their targets file, the namespace from relabelling."""
        return ScrapeJob(name, [], file_sd=str(self.targets_file), mode=mode)

    def start(self) -> ExecutorExporter:
        self._write_targets()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def watch(self, namespace: str) -> None:
        """From now on Prometheus scrapes this namespace's executors (series appear with ``set``).

        Prometheus takes up to ~5 s to act on a new target, as it would for a new pod: call this early."""
        with self._lock:
            if namespace in self._namespaces:
                return
            self._namespaces.add(namespace)
        self._write_targets()

    def set(self, namespace: str, deployment: str, predictor: str, traffic: Traffic, version: str = "") -> None:
        """From now on, this predictor serves this traffic (counters keep what they had). `version` is its
        predictor_version label (the predictor's `version` annotation; "" when it has none)."""
        self.watch(namespace)
        with self._lock:
            key = (namespace, deployment, predictor)
            series = self._series.get(key)
            if series is None:
                self._series[key] = _Series(traffic, version, updated=time.monotonic())
            else:
                self._advance(series, time.monotonic())
                series.traffic, series.version = traffic, version

    def drop(self, namespace: str) -> None:
        """Forget a namespace: its series and its target (its pods are gone)."""
        with self._lock:
            self._namespaces.discard(namespace)
            for key in [key for key in self._series if key[0] == namespace]:
                del self._series[key]
        self._write_targets()

    def _write_targets(self) -> None:
        with self._lock:
            namespaces = sorted(self._namespaces)
        write_targets(self.targets_file, [target_group(self.address, ns, metrics_path=f"/metrics/{ns}",
                                                       container=EXECUTOR_CONTAINER) for ns in namespaces])

    @staticmethod
    def _advance(series: _Series, now: float) -> None:
        elapsed = now - series.updated
        requests = series.traffic.rps * elapsed
        series.errors += requests * series.traffic.error_ratio
        series.ok += requests * (1 - series.traffic.error_ratio)
        series.seconds += requests * series.traffic.latency_s
        series.updated = now

    def render(self, namespace: str) -> str:
        histograms: dict[tuple[str, ...], Histogram] = {}
        now = time.monotonic()
        with self._lock:
            for (ns, deployment, predictor), series in sorted(self._series.items()):
                if ns != namespace:
                    continue
                self._advance(series, now)
                grpc = series.traffic.grpc
                ok_code, error_code = ("OK", "Unavailable") if grpc else ("200", "500")
                service, method = (GRPC_PREDICT, "unary") if grpc else ("predictions", EXECUTOR_METHOD)
                for code, count in ((ok_code, series.ok), (error_code, series.errors)):
                    if count <= 0 and code == error_code:
                        continue
                    total = int(count)
                    histogram = Histogram()
                    histogram.observe(series.traffic.latency_s, total)
                    share = count / (series.ok + series.errors) if series.ok + series.errors else 0
                    histogram.sum = series.seconds * share
                    labels = (deployment, predictor, series.version, service, method, code)
                    histograms[labels] = histogram
        return render_histograms(METRIC, EXECUTOR_HELP, EXECUTOR_LABELS, histograms, buckets=self.buckets)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                match = _PATH.fullmatch(self.path)
                if match is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = exporter.render(match.group(1)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
