"""Synthetic Seldon executor request metrics, with traffic set by the caller.

Used by the integration tests and the reaction benchmark, where metric values must be exactly what the
test says: it stands in for the executor's metrics endpoint, nothing else. The demo and the end-to-end
tests use the real local data plane instead.

It serves ``seldon_api_executor_server_requests_seconds_{bucket,count,sum}`` with the executor's labels,
as if each predictor received ``rps`` requests per second with a share ``error_ratio`` of 500s, all
taking ``latency_s``. Counters advance with wall-clock time, so Prometheus sees real rates.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METRIC = "seldon_api_executor_server_requests_seconds"


@dataclass
class Traffic:
    rps: float = 0.0
    error_ratio: float = 0.0
    latency_s: float = 0.02


@dataclass
class _Series:
    traffic: Traffic
    ok: float = 0.0
    errors: float = 0.0
    seconds: float = 0.0
    updated: float = 0.0


class ExecutorExporter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def start(self) -> ExecutorExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set(self, namespace: str, deployment: str, predictor: str, traffic: Traffic) -> None:
        """From now on, this predictor serves this traffic (counters keep what they had)."""
        with self._lock:
            key = (namespace, deployment, predictor)
            series = self._series.get(key)
            if series is None:
                self._series[key] = _Series(traffic, updated=time.monotonic())
            else:
                self._advance(series, time.monotonic())
                series.traffic = traffic

    @staticmethod
    def _advance(series: _Series, now: float) -> None:
        elapsed = now - series.updated
        requests = series.traffic.rps * elapsed
        series.errors += requests * series.traffic.error_ratio
        series.ok += requests * (1 - series.traffic.error_ratio)
        series.seconds += requests * series.traffic.latency_s
        series.updated = now

    def render(self) -> str:
        lines = [f"# TYPE {METRIC} histogram"]
        now = time.monotonic()
        with self._lock:
            for (namespace, deployment, predictor), series in sorted(self._series.items()):
                self._advance(series, now)
                for code, count in (("200", series.ok), ("500", series.errors)):
                    if count <= 0 and code == "500":
                        continue
                    labels = (f'deployment_name="{deployment}",predictor_name="{predictor}",code="{code}",'
                              f'method="POST",service="predictions",namespace="{namespace}"')
                    total = int(count)
                    for bound in BUCKETS:
                        inside = total if series.traffic.latency_s <= bound else 0
                        lines.append(f'{METRIC}_bucket{{{labels},le="{bound}"}} {inside}')
                    lines.append(f'{METRIC}_bucket{{{labels},le="+Inf"}} {total}')
                    share = count / (series.ok + series.errors) if series.ok + series.errors else 0
                    lines.append(f"{METRIC}_count{{{labels}}} {total}")
                    lines.append(f"{METRIC}_sum{{{labels}}} {series.seconds * share:.6f}")
        return "\n".join(lines) + "\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler
