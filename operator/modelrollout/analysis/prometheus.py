"""The Prometheus metric provider: one instant query, one number, with errors a person can act on.

The blocking HTTP client runs on a bounded pool of worker threads of its own (``shared_query_pool``), not on
the event loop's default executor: slow Prometheus calls can neither block the event loop nor take the
threads Kubernetes I/O runs on. Every request has a timeout and transient failures a bounded number of
retries.

Grouped queries (``query_group``: one query answering for every rollout of a namespace, one series each)
are asked once per query text and evaluation instant: the checks of many rollouts at one instant share
the answer, and each reads the series carrying its own labels. So the queries a provider sends per
analysis interval follow the number of templates and namespaces in use, not the number of rollouts.

Nothing Prometheus (or whatever answers at its address) sends reaches status or Events: an error is
described by its HTTP status code, or by the errno of a failed connection, in fixed words. The answer
itself is logged at debug level only.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import os
import re
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol

import requests

from .result import QueryOutcome

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_S = 0.25
DEFAULT_MAX_WORKERS = 8  # Prometheus queries that run at once, across every provider sharing the pool
# How far behind the newest evaluation instant a shared answer is kept (checks pin whole seconds).
SHARED_ANSWERS_KEPT_S = 3.0

# How prometheus-api-client words a non-200 answer: "HTTP Status Code 400 (b'<the body>')".
_HTTP_STATUS = re.compile(r"HTTP Status Code (\d{3})\b")
_ERRNO = re.compile(r"\[Errno (-?\d+)\]")

# Fixed words for each HTTP status: nothing of the answer's body is repeated.
_HTTP_PHRASES = {
    400: "the query was rejected as invalid PromQL",
    401: "the request was not authenticated",
    403: "the request was not authorized",
    404: "there is no Prometheus query API at this address",
    422: "the query could not be executed",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "the service is unavailable",
    504: "gateway timeout",
}

# getaddrinfo's errors have negative errnos and no os.strerror text.
_RESOLVER_ERRORS = {
    getattr(socket, name): text for name, text in (
        ("EAI_NONAME", "Name or service not known"),
        ("EAI_AGAIN", "Temporary failure in name resolution"),
        ("EAI_FAIL", "Non-recoverable failure in name resolution"),
        ("EAI_NODATA", "No address associated with hostname"),
        ("EAI_ADDRFAMILY", "Address family for hostname not supported"),
    ) if hasattr(socket, name)
}

_shared_pool: ThreadPoolExecutor | None = None
_shared_pool_size = 0
_shared_pool_lock = threading.Lock()


def shared_query_pool(max_workers: int | None = None) -> ThreadPoolExecutor:
    """The worker threads every PrometheusProvider not given an executor of its own queries on.

    Created on first use with ``max_workers`` threads (default ``DEFAULT_MAX_WORKERS``); asking for another
    size replaces it: queries already running finish on the old pool, later ones use the new one.
    """
    global _shared_pool, _shared_pool_size
    if max_workers is not None and max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, not {max_workers}")
    with _shared_pool_lock:
        wanted = max_workers if max_workers is not None else (_shared_pool_size or DEFAULT_MAX_WORKERS)
        if _shared_pool is None or wanted != _shared_pool_size:
            if _shared_pool is not None:
                _shared_pool.shutdown(wait=False)
            _shared_pool = ThreadPoolExecutor(max_workers=wanted, thread_name_prefix="prometheus-query")
            _shared_pool_size = wanted
        return _shared_pool


class PrometheusClient(Protocol):
    """The part of ``prometheus_api_client.PrometheusConnect`` this provider uses."""

    def custom_query(self, query: str, params: dict[str, Any] | None = None,
                     timeout: Any = None) -> Any: ...


class _NoFreeWorker(Exception):
    """The query waited its whole timeout for a worker thread and never started."""


class _Answer:
    """A grouped query's answer, indexed by the values of the labels a rollout is told apart by."""

    def __init__(self, series: list[dict[str, Any]] | None = None, error: QueryOutcome | None = None) -> None:
        self.series = series or []
        self.error = error
        self._indexes: dict[tuple[str, ...], dict[tuple[str, ...], list[dict[str, Any]]]] = {}

    @classmethod
    def of(cls, raw: Any) -> _Answer:
        if not isinstance(raw, list) or (len(raw) == 2 and not isinstance(raw[0], dict)):
            return cls(error=QueryOutcome.failed("a grouped query must return an instant vector"))
        if not all(isinstance(item, dict) and isinstance(item.get("metric"), dict) for item in raw):
            return cls(error=QueryOutcome.failed("query returned a series without labels; is it an instant vector?"))
        return cls(series=raw)

    def series_of(self, group: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """The series whose labels hold exactly ``group``'s values (a series lacking one of them: none)."""
        labels = tuple(label for label, _ in group)
        index = self._indexes.get(labels)
        if index is None:
            index = {}
            for item in self.series:
                metric = item["metric"]
                if all(label in metric for label in labels):
                    index.setdefault(tuple(str(metric[label]) for label in labels), []).append(item)
            self._indexes[labels] = index
        return index.get(tuple(value for _, value in group), [])


class _SharedAnswers:
    """Grouped queries' answers by (query, evaluation instant), each asked once. Held by a provider and its
    pinned views alike; answers older than the newest instant by SHARED_ANSWERS_KEPT_S are dropped."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, float], tuple[asyncio.AbstractEventLoop, asyncio.Future[_Answer]]] = {}
        self.asked = 0  # grouped queries sent (for tests and benchmarks)

    def get(self, promql: str, at: float, ask: Callable[[], Coroutine[Any, Any, _Answer]]) -> asyncio.Future[_Answer]:
        loop = asyncio.get_running_loop()
        found = self._answers.get((promql, at))
        if found is not None and found[0] is loop:
            return found[1]
        self.asked += 1
        answer: asyncio.Future[_Answer] = loop.create_task(ask())
        self._answers[(promql, at)] = (loop, answer)
        oldest = at - SHARED_ANSWERS_KEPT_S
        for key in [key for key in self._answers if key[1] < oldest]:
            del self._answers[key]
        return answer


class PrometheusProvider:
    """A MetricProvider backed by the Prometheus HTTP API (``PrometheusConnect.custom_query``).

    ``executor`` runs the blocking calls; by default the pool shared by all providers (``shared_query_pool``).
    """

    def __init__(self, address: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 backoff_s: float = DEFAULT_BACKOFF_S, client: PrometheusClient | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 executor: Executor | None = None) -> None:
        self.address = address.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._client = client if client is not None else _connect(self.address, timeout_s)
        self._sleep = sleep
        self._executor = executor
        self._at: float | None = None  # evaluation time of every query (unix seconds); None: Prometheus's now
        self._shared = _SharedAnswers()

    def pinned(self, at: float) -> PrometheusProvider:
        """This provider with every query evaluated at one instant: the counts of one check (successes and
        trials, candidate and stable) then describe the same moment, not moments a scrape apart."""
        view = copy.copy(self)
        view._at = at
        return view

    async def query(self, promql: str) -> QueryOutcome:
        return await self._query(promql, parse_result)

    async def query_by(self, promql: str, label: str) -> QueryOutcome:
        return await self._query(promql, lambda raw: parse_by_label(raw, label))

    async def query_group(self, promql: str, group: Sequence[tuple[str, str]], by: str | None = None) -> QueryOutcome:
        """One rollout's part of a grouped query's answer: the series whose labels hold ``group``'s values,
        as one number (``by`` None) or by the label ``by``. Pinned to an instant, the query is sent once for
        every rollout asking it at that instant; unpinned, every call sends it."""
        if self._at is None:
            answer = await self._answer(promql)
        else:
            # Shielded: one waiter's deadline must not cancel the query the others are waiting for.
            answer = await asyncio.shield(self._shared.get(promql, self._at, lambda: self._answer(promql)))
        if answer.error is not None:
            return answer.error
        series = answer.series_of(group)
        if by is not None:
            return parse_by_label(series, by)
        return parse_result(series)

    async def _answer(self, promql: str) -> _Answer:
        raw, error = await self._fetch(promql)
        return _Answer(error=error) if error is not None else _Answer.of(raw)

    async def _query(self, promql: str, parse: Callable[[Any], QueryOutcome]) -> QueryOutcome:
        raw, error = await self._fetch(promql)
        return error if error is not None else parse(raw)

    async def _fetch(self, promql: str) -> tuple[Any, QueryOutcome | None]:
        """The answer's ``data.result``, or the error (in fixed words) after the bounded retries."""
        outcome = QueryOutcome.failed("no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                await self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return await self._call(promql), None
            except Exception as exc:  # the client raises many kinds; each becomes an error in fixed words
                outcome, transient = self._describe(exc)
                if not transient:
                    return None, outcome
        return None, outcome

    async def _call(self, promql: str) -> Any:
        executor = self._executor if self._executor is not None else shared_query_pool()
        started = threading.Event()

        def call() -> Any:
            started.set()
            params = None if self._at is None else {"time": f"{self._at:.3f}"}
            return self._client.custom_query(promql, params=params, timeout=self.timeout_s)

        running = asyncio.get_running_loop().run_in_executor(executor, call)
        try:
            # The HTTP timeout fires first; this bounds the rest, and the wait for a free worker.
            return await asyncio.wait_for(running, timeout=self.timeout_s + 1.0)
        except TimeoutError:
            if not started.is_set():
                raise _NoFreeWorker() from None
            raise

    def _describe(self, exc: Exception) -> tuple[QueryOutcome, bool]:
        """The outcome for an exception, and whether trying again may help.

        The messages go to status and Events, so they hold the address, a status code or errno and fixed
        words, never text the server sent; the exception itself is logged at debug level.
        """
        log.debug("query to Prometheus at %s failed: %s: %s", self.address, type(exc).__name__, exc)
        if isinstance(exc, _NoFreeWorker):
            return QueryOutcome.failed(f"no worker was free to query Prometheus at {self.address} within "
                                       f"{self.timeout_s + 1.0:g}s (too many queries at once)"), True
        if isinstance(exc, requests.Timeout | TimeoutError):
            return QueryOutcome.failed(f"Prometheus at {self.address} did not answer within "
                                       f"{self.timeout_s:g}s"), True
        if isinstance(exc, requests.ConnectionError):
            return QueryOutcome.failed(f"Prometheus unreachable at {self.address}: {_connection_reason(exc)}"), True
        if isinstance(exc, requests.exceptions.JSONDecodeError):
            return QueryOutcome.failed(f"Prometheus at {self.address} answered with something that is not "
                                       "JSON; is this a Prometheus query API?"), False
        if isinstance(exc, requests.RequestException):
            return QueryOutcome.failed(f"request to Prometheus at {self.address} failed "
                                       f"({type(exc).__name__})"), True
        match = _HTTP_STATUS.match(str(exc))
        if match is None:
            return QueryOutcome.failed(f"unexpected answer from Prometheus at {self.address} "
                                       f"({type(exc).__name__})"), False
        code = int(match.group(1))
        phrase = _HTTP_PHRASES.get(code) or ("the request was refused" if code < 500 else "server error")
        transient = code >= 500 or code == 429
        return QueryOutcome.failed(f"Prometheus at {self.address} answered HTTP {code}: {phrase}"), transient


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
    value = series["value"]
    if not isinstance(value, list | tuple) or len(value) != 2:
        return QueryOutcome.failed("query returned a sample that is not a [time, value] pair")
    return _number(value[1])


def parse_by_label(raw: Any, label: str) -> QueryOutcome:
    """Numbers by the value of ``label`` out of an instant vector (``sum by (label) (...)``)."""
    if not isinstance(raw, list) or (len(raw) == 2 and not isinstance(raw[0], dict)):
        return QueryOutcome.failed(f"query must return an instant vector by {label}")
    if not raw:
        return QueryOutcome.no_data("query returned an empty result")
    series: dict[str, float] = {}
    for item in raw:
        metric = item.get("metric") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(metric, dict) or label not in metric:
            return QueryOutcome.failed(f"query returned a series without the label {label!r}; aggregate it "
                                       f"with sum by ({label}) (...)")
        if not isinstance(value, list | tuple) or len(value) != 2:
            return QueryOutcome.failed("query returned a sample that is not a [time, value] pair")
        key = str(metric[label])
        if key in series:  # the value is the answer's text: it is not repeated
            return QueryOutcome.failed(f"query returned two series with the same {label}; aggregate it "
                                       f"with sum by ({label}) (...)")
        number = _number(value[1])
        if number.error:
            return number
        series[key] = number.value if number.value is not None else math.nan
    return QueryOutcome.by_label(series)


def _number(text: Any) -> QueryOutcome:
    try:
        value = float(text)
    except (TypeError, ValueError):
        log.debug("query returned %r, which is not a number", text)
        return QueryOutcome.failed("query returned a value that is not a number")
    return QueryOutcome.number(value)


def _connection_reason(exc: BaseException) -> str:
    """The errno of a failed connection in the operating system's words, or a fixed phrase."""
    number = _errno(exc)
    if number is None:
        return "the connection failed"
    text = os.strerror(number) if number > 0 else _RESOLVER_ERRORS.get(number, "name resolution failed")
    return f"[Errno {number}] {text}"


def _errno(exc: BaseException) -> int | None:
    """The errno behind a connection error: requests wraps urllib3's errors, which wrap the OSError."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        number = getattr(current, "errno", None)
        if isinstance(current, OSError) and isinstance(number, int) and number != 0:
            return number
        pending.extend((getattr(current, "reason", None), current.__cause__, current.__context__, *current.args))
    match = _ERRNO.search(str(exc))  # an error rebuilt from text keeps only the words
    return int(match.group(1)) if match else None


def _connect(address: str, timeout_s: float) -> PrometheusClient:
    from prometheus_api_client import PrometheusConnect
    from urllib3.util.retry import Retry

    # No retries inside the client: this provider retries itself, boundedly, without blocking the loop.
    client: PrometheusClient = PrometheusConnect(url=address, retry=Retry(total=0, raise_on_status=False),
                                                 timeout=timeout_s)
    return client
