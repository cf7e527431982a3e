"""Instant queries against a Prometheus on loopback, and the predictions the local ingress served."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any


def prom_query(prometheus_url: str, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return list(json.loads(resp.read())["data"]["result"])


def prom_value(prometheus_url: str, promql: str) -> float | None:
    """The single value of an instant query, None when it has no result."""
    result = prom_query(prometheus_url, promql)
    return float(result[0]["value"][1]) if result else None


def ingress_requests(prometheus_url: str, namespace: str, predicate: str = "", window: str = "") -> float:
    """Predictions served through the ingress for a namespace (total, or increase over a window)."""
    selector = f'namespace="{namespace}",service="predictions"' + (f",{predicate}" if predicate else "")
    metric = f"seldon_api_executor_server_requests_seconds_count{{{selector}}}"
    query = f"sum(increase({metric}[{window}]))" if window else f"sum({metric})"
    return prom_value(prometheus_url, query) or 0.0
