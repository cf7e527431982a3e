"""The Prometheus metric provider: one instant query, one number, with errors a person can act on.

The blocking HTTP client runs in a worker thread (``asyncio.to_thread``) so the operator's event loop
never waits on Prometheus; every request has a timeout and transient failures a bounded number of retries.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import requests

from .result import QueryOutcome

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.25

_HTTP_ERROR = re.compile(r"HTTP Status Code (\d+) \((.*)\)\s*$", re.DOTALL)
_OS_ERROR = re.compile(r"\[Errno -?\d+\][^'\")]*")


class PrometheusClient(Protocol):
    """The part of ``prometheus_api_client.PrometheusConnect`` this provider uses."""

    def custom_query(self, query: str, params: dict[str, Any] | None = None,
                     timeout: Any = None) -> Any: ...


class PrometheusProvider:
    """A MetricProvider backed by the Prometheus HTTP API (``PrometheusConnect.custom_query``)."""

    def __init__(self, address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 backoff_s: float = DEFAULT_BACKOFF_S, client: PrometheusClient | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.address = address.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._client = client if client is not None else _connect(self.address, timeout_s)
        self._sleep = sleep

    async def query(self, promql: str) -> QueryOutcome:
        outcome = QueryOutcome.failed("no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                await self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                raw = await asyncio.wait_for(
                    asyncio.to_thread(self._client.custom_query, promql, timeout=self.timeout_s),
                    timeout=self.timeout_s + 1.0)  # the HTTP timeout fires first; this bounds the rest
            except Exception as exc:  # the client raises many kinds; each becomes an error in words
                outcome, transient = self._describe(exc)
                if not transient:
                    return outcome
            else:
                return parse_result(raw)
        return outcome

    def _describe(self, exc: Exception) -> tuple[QueryOutcome, bool]:
        """The outcome for an exception, and whether trying again may help."""
        if isinstance(exc, requests.Timeout | TimeoutError):
            return QueryOutcome.failed(f"Prometheus at {self.address} did not answer within "
                                       f"{self.timeout_s:g}s"), True
        if isinstance(exc, requests.ConnectionError):
            return QueryOutcome.failed(f"Prometheus unreachable at {self.address}: {_os_reason(exc)}"), True
        if isinstance(exc, requests.RequestException):
            return QueryOutcome.failed(f"request to Prometheus at {self.address} failed: {exc}"), True
        match = _HTTP_ERROR.match(str(exc))
        if match is None:
            return QueryOutcome.failed(f"unexpected answer from Prometheus at {self.address}: "
                                       f"{type(exc).__name__}: {exc}"), False
        code = int(match.group(1))
        error_type, error = _api_error(match.group(2))
        if code in (400, 422) or error_type == "bad_data":
            return QueryOutcome.failed(f"Prometheus rejected the query as invalid PromQL "
                                       f"({error_type or f'HTTP {code}'}): {error}"), False
        transient = code >= 500 or code == 429
        return QueryOutcome.failed(f"Prometheus at {self.address} answered HTTP {code}: {error}"), transient


def parse_result(raw: Any) -> QueryOutcome:
    """One number out of an instant query's ``data.result`` (a vector, or a scalar pair)."""
    if isinstance(raw, list) and len(raw) == 2 and not isinstance(raw[0], dict):
        return _number(raw[1])  # resultType scalar: [timestamp, "value"]
    if not isinstance(raw, list):
        return QueryOutcome.failed(f"query returned {type(raw).__name__}; it must return one number")
    if not raw:
        return QueryOutcome.no_data("query returned an empty result")
    if len(raw) > 1:
        return QueryOutcome.failed(f"query returned {len(raw)} series; it must return one number "
                                   "(aggregate it, e.g. with sum(...))")
    series = raw[0]
    if not isinstance(series, dict) or "value" not in series:
        return QueryOutcome.failed("query returned a range vector; it must return one number (an instant vector)")
    return _number(series["value"][1])


def _number(text: Any) -> QueryOutcome:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return QueryOutcome.failed(f"query returned {text!r}, which is not a number")
    return QueryOutcome.number(value)


def _api_error(body_repr: str) -> tuple[str, str]:
    """errorType and error of a Prometheus API error body, from the client's repr of the response bytes."""
    try:
        body = ast.literal_eval(body_repr)
        data = json.loads(body.decode() if isinstance(body, bytes) else body)
        return str(data.get("errorType", "")), str(data.get("error", "")).strip()
    except (ValueError, SyntaxError, AttributeError, UnicodeDecodeError):
        return "", body_repr[:300]


def _os_reason(exc: Exception) -> str:
    match = _OS_ERROR.search(str(exc))
    return match.group(0).strip() if match else str(exc)[:300]


def _connect(address: str, timeout_s: float) -> PrometheusClient:
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    # No retries inside the client: this provider retries itself, boundedly, without blocking the loop.
    client: PrometheusClient = PrometheusConnect(url=address, retry=Retry(total=0, raise_on_status=False),
                                                 timeout=timeout_s)
    return client
