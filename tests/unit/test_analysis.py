"""Analysis: query rendering, builtin templates, the threshold judge, the Prometheus provider, run_checks."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml
from modelrollout.analysis import (
    DEFAULT_MAX_WORKERS,
    AnalysisContext,
    Measurement,
    PrometheusProvider,
    QueryError,
    QueryOutcome,
    QueryVariables,
    StaticTemplates,
    ThresholdJudge,
    parse_result,
    provider_error,
    render_query,
    run_checks,
    shared_query_pool,
)
from modelrollout.analysis.sources import template_from_spec
from modelrollout.api import Compare, JudgeKind, Limits, Metric, RolloutSpec
from modelrollout.backends import TARGET_KINDS
from modelrollout.backends.seldon_v1_queries import BUILTIN_QUERIES, PREDICTION_SERVICES, REQUEST_COUNT_QUERY
from modelrollout.status import CheckRecord, Verdict
from modelrollout.templates import Shape
from prometheus_api_client.exceptions import PrometheusApiClientException

T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
VARS = QueryVariables(namespace="models", target="iris", stable="main", candidate="main-candidate", interval="30s")


# --------------------------------------------------------------------------------------------------
# Rendering


def test_render_substitutes_every_variable() -> None:
    template = "{{namespace}}|{{target}}|{{stable}}|{{candidate}}|{{interval}}|{{ candidate }}"
    assert render_query(template, VARS) == "models|iris|main|main-candidate|30s|main-candidate"


def test_render_leaves_a_query_without_variables_alone() -> None:
    assert render_query('sum(up{job="x"})', VARS) == 'sum(up{job="x"})'


def test_render_names_an_unknown_variable() -> None:
    with pytest.raises(QueryError, match=r"unknown variable \{\{model\}\}.*\{\{namespace\}\}"):
        render_query("rate(x{m='{{model}}'}[{{interval}}])", VARS)


@pytest.mark.parametrize(("field", "value"), [
    ("candidate", 'x"}) or vector(1)'),
    ("candidate", "Main"),
    ("candidate", "a" * 64),
    ("stable", "main\n"),
    ("namespace", "models.prod"),  # a namespace is a DNS label, no dots
    ("target", 'iris",x="'),
    ("target", ""),
    ("interval", "30s]) or vector(1"),
    ("interval", "-5m"),
    ("interval", "30"),
])
def test_values_that_could_inject_promql_are_refused(field: str, value: str) -> None:
    fields = {"namespace": "models", "target": "iris", "stable": "main", "candidate": "main-candidate",
              "interval": "30s", field: value}
    with pytest.raises(QueryError, match=field):
        QueryVariables(**fields)


def test_dns_subdomain_targets_and_compound_intervals_are_accepted() -> None:
    variables = QueryVariables(namespace="models", target="iris.v1", stable="main", candidate="c",
                               interval="1m30s")
    assert render_query("{{target}}/{{interval}}", variables) == "iris.v1/1m30s"


def test_window_seconds_become_a_promql_duration() -> None:
    assert QueryVariables.for_window("models", "iris", "main", "c", 90).interval == "1m30s"


# --- {{candidateVersion}} and {{stableVersion}}

VERSIONED = QueryVariables(namespace="models", target="iris", stable="main", candidate="main-candidate",
                           interval="30s", candidate_version="2.1.0-degraded", stable_version="1.0.0")


def with_versions(candidate_version: str = "2.0.0", stable_version: str = "1.0.0") -> QueryVariables:
    return QueryVariables(namespace="models", target="iris", stable="main", candidate="main-candidate",
                          interval="30s", candidate_version=candidate_version, stable_version=stable_version)


def test_render_substitutes_the_versions() -> None:
    template = ('sum(rate(feedback_outcomes_total{served_model_version="{{candidateVersion}}"}[{{interval}}]))'
                ' / sum(rate(feedback_outcomes_total{served_model_version="{{ stableVersion }}"}[{{interval}}]))')
    assert render_query(template, VERSIONED) == (
        'sum(rate(feedback_outcomes_total{served_model_version="2.1.0-degraded"}[30s]))'
        ' / sum(rate(feedback_outcomes_total{served_model_version="1.0.0"}[30s]))')
    assert render_query("{{candidateVersion}}", with_versions("A_b.9-z")) == "A_b.9-z"
    assert render_query("{{candidateVersion}}", with_versions("v" * 63)) == "v" * 63
    assert VERSIONED.as_dict()["candidateVersion"] == "2.1.0-degraded"


INJECTIONS = [
    '2.0.0"} or vector(1) #',
    '2.0.0",predictor_name=~".*',
    "2.0.0}[5m]) or vector(1",
    '2.0.0" or vector(1)',
    "2.0.0\n",
    "2.0.0 ",
    " 2.0.0",
    "2.0.0+build.5",  # semver build metadata: not a label-safe version name
    "2.0.0\\",
    "2.0.0'",
    "2.0.0`",
    "-2.0.0",
    "2.0.0-",
    "\uff12.0.0",  # a fullwidth digit
    "{{candidate}}",
    "v" * 64,
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_a_candidate_version_that_could_inject_promql_is_refused_never_substituted(value: str) -> None:
    template = 'sum(rate(x{served_model_version="{{candidateVersion}}",predictor_name="{{candidate}}"}[{{interval}}]))'
    with pytest.raises(QueryError, match=r"\{\{candidateVersion\}\} value .* is not a version name"):
        render_query(template, with_versions(candidate_version=value))


@pytest.mark.parametrize("value", INJECTIONS)
def test_a_stable_version_that_could_inject_promql_is_refused_never_substituted(value: str) -> None:
    with pytest.raises(QueryError, match=r"\{\{stableVersion\}\} value .* is not a version name"):
        render_query('x{served_model_version="{{stableVersion}}"}', with_versions(stable_version=value))


def test_a_version_is_checked_only_where_a_query_uses_it() -> None:
    # A bad or missing version never stops a query that does not use it (every builtin template, say).
    bad = with_versions(candidate_version='2"} or vector(1) #', stable_version="")
    for name, query in BUILTIN_QUERIES.items():
        assert render_query(query, bad) == render_query(query, VARS), name
    assert render_query("{{candidate}}/{{interval}}", bad) == "main-candidate/30s"


def test_an_unknown_version_used_by_a_query_is_refused() -> None:
    with pytest.raises(QueryError, match=r"^stable version unknown: the query uses \{\{stableVersion\}\}"):
        render_query('x{v="{{stableVersion}}"}', with_versions(stable_version=""))
    with pytest.raises(QueryError, match=r"^candidate version unknown: the query uses \{\{candidateVersion\}\}"):
        render_query('x{v="{{candidateVersion}}"}', with_versions(candidate_version=""))
    # VARS was built without versions: both unknown.
    with pytest.raises(QueryError, match="candidate version unknown"):
        render_query("{{candidateVersion}}", VARS)
    with pytest.raises(QueryError, match="stable version unknown"):
        render_query("{{stableVersion}}", VARS)


def test_a_template_with_one_bad_version_is_refused_as_a_whole() -> None:
    # The good candidate version comes first in the template: every variable is checked before any is put in.
    with pytest.raises(QueryError, match="stableVersion"):
        render_query("{{candidateVersion}} {{stableVersion}}", with_versions(stable_version="1.0.0)"))


def test_versions_must_be_strings() -> None:
    with pytest.raises(QueryError, match="candidate_version must be a string"):
        QueryVariables(namespace="models", target="iris", stable="main", candidate="c", interval="30s",
                       candidate_version=2.0)  # type: ignore[arg-type]


def test_the_version_variables_are_known() -> None:
    with pytest.raises(QueryError, match=r"\{\{candidateVersion\}\}, \{\{stableVersion\}\}"):
        render_query("{{modelVersion}}", VERSIONED)


def test_the_window_and_versions_carry_through_for_window() -> None:
    variables = QueryVariables.for_window("models", "iris", "main", "c", 90, candidate_version="2.0.0",
                                          stable_version="1.0.0")
    assert (variables.interval, variables.candidate_version, variables.stable_version) == ("1m30s", "2.0.0", "1.0.0")


# --------------------------------------------------------------------------------------------------
# Builtin templates


def _crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / "modelrollout.dev_modelrollouts.yaml")
                         .read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def test_the_crd_accepts_exactly_the_registered_kinds_versions_and_builtin_templates() -> None:
    """Spec validation reads the backend registry; the CRD's enums must say the same, or the API server
    refuses what the operator supports (or lets through what it refuses)."""
    spec = _crd_schema()
    target = spec["targetRef"]["properties"]
    assert set(target["kind"]["enum"]) == set(TARGET_KINDS)
    assert set(target["apiVersion"]["enum"]) == {v for k in TARGET_KINDS.values() for v in k.api_versions}
    template = spec["analysis"]["properties"]["metrics"]["items"]["properties"]["template"]
    assert set(template["enum"]) == {n for k in TARGET_KINDS.values() for n in k.builtin_templates}


@pytest.mark.parametrize("name", sorted(BUILTIN_QUERIES))
def test_builtin_queries_select_the_candidate_of_this_deployment(name: str) -> None:
    query = render_query(BUILTIN_QUERIES[name], VARS)
    assert 'namespace="models"' in query
    assert 'deployment_name="iris"' in query
    assert 'predictor_name="main-candidate"' in query
    assert 'service=~"predictions|/seldon.protos.Seldon/Predict|' in query  # feedback would dilute errors and latency
    assert "feedback" not in query and "SendFeedback" not in query
    assert "[30s]" in query
    assert "{{" not in query


def test_success_rate_is_one_minus_the_share_of_5xx_requests() -> None:
    # What the query answers for each traffic shape is proven with promtool in test_promql_rules.py.
    query = render_query(BUILTIN_QUERIES["request-success-rate"], VARS)
    assert query.startswith("1 - ((sum(rate(")
    errors_or_zero, requests_ = query.split(")) / ")
    errors, zero_if_none = errors_or_zero.split(" or 0 * ")
    assert zero_if_none + "))" == requests_  # no 5xx series: 0 errors where there are requests
    assert "seldon_api_executor_server_requests_seconds_count{" in errors
    # no 5xx series at all counts as 0 errors, not as no data; gRPC failures count as 5xx do
    assert 'code=~"5..|Unknown|DeadlineExceeded|Internal|Unavailable' in errors
    assert "code" not in requests_  # every request, so no requests at all stays no data
    assert requests_.startswith("sum(rate(") and requests_.endswith("[30s])))")


@pytest.mark.parametrize(("name", "quantile"), [("request-duration-p50", "0.5"), ("request-duration-p90", "0.9"),
                                                ("request-duration-p99", "0.99")])
def test_duration_quantiles_come_from_the_histogram_buckets(name: str, quantile: str) -> None:
    query = render_query(BUILTIN_QUERIES[name], VARS)
    assert query.startswith(f"histogram_quantile({quantile}, sum by (le) (rate(")
    assert "seldon_api_executor_server_requests_seconds_bucket{" in query


def test_request_count_is_the_increase_over_the_window() -> None:
    query = render_query(REQUEST_COUNT_QUERY, VARS)
    assert query == ('sum(increase(seldon_api_executor_server_requests_seconds_count{namespace="models",'
                     'deployment_name="iris",predictor_name="main-candidate",'
                     'service=~"predictions|/seldon.protos.Seldon/Predict|/inference.GRPCInferenceService/ModelInfer"'
                     '}[30s]))')
    assert BUILTIN_QUERIES["request-count"] == REQUEST_COUNT_QUERY


# --------------------------------------------------------------------------------------------------
# Threshold judge

SUCCESS = Metric(name="success-rate", template="request-success-rate", min=0.99)
LATENCY = Metric(name="latency-p99", template="request-duration-p99", max=0.25)
BAND = Metric(name="accuracy", query="x", min=0.5, max=0.9)


@pytest.mark.parametrize(("metric", "value", "verdict", "message"), [
    (SUCCESS, 0.931, Verdict.FAIL, "success-rate = 0.931 is below min 0.99 over 30s"),
    (SUCCESS, 0.99, Verdict.PASS, "success-rate = 0.99 is within min 0.99 over 30s"),
    (SUCCESS, 1.0, Verdict.PASS, "success-rate = 1 is within min 0.99 over 30s"),
    (LATENCY, 0.412, Verdict.FAIL, "latency-p99 = 0.412 is above max 0.25 over 30s"),
    (LATENCY, 0.1, Verdict.PASS, "latency-p99 = 0.1 is within max 0.25 over 30s"),
    (BAND, 0.4, Verdict.FAIL, "accuracy = 0.4 is below min 0.5 over 30s"),
    (BAND, 0.95, Verdict.FAIL, "accuracy = 0.95 is above max 0.9 over 30s"),
    (BAND, 0.7, Verdict.PASS, "accuracy = 0.7 is within min 0.5 and max 0.9 over 30s"),
])
def test_threshold_judge(metric: Metric, value: float, verdict: Verdict, message: str) -> None:
    assert ThresholdJudge().judge(metric, Measurement(value, "30s")) == (verdict, message)


def test_no_value_is_inconclusive_never_a_pass() -> None:
    verdict, message = ThresholdJudge().judge(LATENCY, Measurement(None, "1m"))
    assert verdict is Verdict.INCONCLUSIVE
    assert message == "latency-p99: no data over 1m — inconclusive, never a pass"


# --------------------------------------------------------------------------------------------------
# Prometheus provider: result mapping


def vector(*values: str) -> list[dict[str, Any]]:
    return [{"metric": {"predictor_name": f"p{i}"}, "value": [1700000000.0, v]} for i, v in enumerate(values)]


@pytest.mark.parametrize(("raw", "expected"), [
    (vector("0.998"), QueryOutcome(value=0.998)),
    ([1700000000.0, "42"], QueryOutcome(value=42.0)),  # a scalar result
    (vector(), QueryOutcome(no_data_reason="query returned an empty result")),
])
def test_results_map_to_one_number_or_no_data(raw: Any, expected: QueryOutcome) -> None:
    assert parse_result(raw) == expected


@pytest.mark.parametrize("text", ["NaN", "+Inf", "-Inf"])
def test_nan_and_infinities_are_no_data(text: str) -> None:
    outcome = parse_result(vector(text))
    assert outcome.value is None
    assert outcome.error == ""
    assert outcome.no_data_reason


def test_several_series_are_an_error() -> None:
    outcome = parse_result(vector("1", "2", "3"))
    assert outcome.value is None
    assert outcome.error.startswith("query returned 3 series; it must return one number")


def test_a_range_vector_or_a_string_is_an_error() -> None:
    assert "range vector" in parse_result([{"metric": {}, "values": [[1, "1"]]}]).error
    assert parse_result(vector("abc")).error == "query returned a value that is not a number"


def test_a_value_that_is_not_a_number_is_not_repeated() -> None:
    outcome = parse_result(vector("token=s3cr3t-value"))
    assert "s3cr3t" not in outcome.error


class FakeClient:
    """Stands in for PrometheusConnect: answers (or raises) from a script, one entry per call."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.queries: list[str] = []
        self.timeouts: list[Any] = []

    def custom_query(self, query: str, params: dict[str, Any] | None = None, timeout: Any = None) -> Any:
        self.queries.append(query)
        self.timeouts.append(timeout)
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def provider(client: FakeClient, sleeps: Sleeps | None = None, retries: int = 2) -> PrometheusProvider:
    return PrometheusProvider("http://prometheus:9090/", client=client, retries=retries, backoff_s=0.5,
                              timeout_s=3.0, sleep=sleeps or Sleeps())


def api_error(code: int, body: dict[str, Any]) -> PrometheusApiClientException:
    # Exactly how prometheus-api-client words a non-200 answer.
    return PrometheusApiClientException(f"HTTP Status Code {code} ({json.dumps(body).encode()!r})")


def test_a_value_comes_back_with_the_request_timeout_applied() -> None:
    client = FakeClient(vector("0.5"))
    outcome = asyncio.run(provider(client).query("up"))
    assert outcome == QueryOutcome(value=0.5)
    assert client.queries == ["up"]
    assert client.timeouts == [3.0]


def test_a_promql_syntax_error_is_reported_as_such_and_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    error = api_error(400, {"status": "error", "errorType": "bad_data",
                            "error": 'invalid parameter "query": 1:5: parse error: unexpected "}"'})
    client, sleeps = FakeClient(error), Sleeps()
    with caplog.at_level(logging.DEBUG, logger="modelrollout.analysis.prometheus"):
        outcome = asyncio.run(provider(client, sleeps).query("sum(}"))
    assert outcome.value is None
    assert outcome.error == ("Prometheus at http://prometheus:9090 answered HTTP 400: "
                             "the query was rejected as invalid PromQL")
    assert len(client.queries) == 1
    assert sleeps.calls == []
    # Prometheus's own words are for the operator's debug log, not for status or Events.
    assert "1:5: parse error: unexpected" in caplog.text


SECRET = "Authorization: Bearer sk-live-9f8e7d6c5b4a"


@pytest.mark.parametrize(("code", "phrase", "attempts"), [
    (400, "the query was rejected as invalid PromQL", 1),
    (422, "the query could not be executed", 1),
    (500, "internal server error", 3),
    (503, "the service is unavailable", 3),
])
def test_an_http_error_says_its_code_in_fixed_words_and_never_repeats_the_body(code: int, phrase: str,
                                                                               attempts: int) -> None:
    bodies: list[dict[str, Any]] = [
        {"status": "error", "errorType": "bad_data", "error": f"1:1: parse error near {SECRET}"},
        {"status": "error", "errorType": "execution", "error": SECRET},
        {"status": "error", "error": SECRET, "data": {"result": [SECRET]}},
    ]
    for body in bodies:
        client = FakeClient(api_error(code, body))
        outcome = asyncio.run(provider(client).query("up"))
        assert outcome.error == f"Prometheus at http://prometheus:9090 answered HTTP {code}: {phrase}"
        assert "sk-live" not in outcome.error and "Bearer" not in outcome.error
        assert len(client.queries) == attempts  # 5xx may pass; a rejected query will not
    # Not JSON at all, e.g. a proxy's page.
    raw = PrometheusApiClientException(f"HTTP Status Code {code} ({f'<html>{SECRET}</html>'.encode()!r})")
    assert asyncio.run(provider(FakeClient(raw)).query("up")).error.endswith(f"HTTP {code}: {phrase}")


@pytest.mark.parametrize(("code", "phrase"), [(401, "the request was not authenticated"),
                                              (418, "the request was refused"), (599, "server error")])
def test_other_codes_get_fixed_words_too(code: int, phrase: str) -> None:
    outcome = asyncio.run(provider(FakeClient(api_error(code, {"error": SECRET}))).query("up"))
    assert outcome.error == f"Prometheus at http://prometheus:9090 answered HTTP {code}: {phrase}"


def test_an_unreachable_prometheus_is_retried_a_bounded_number_of_times() -> None:
    refused = requests.ConnectionError(
        "HTTPConnectionPool(host='prometheus', port=9090): Max retries exceeded with url: /api/v1/query "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object>: Failed to establish a "
        "new connection: [Errno 111] Connection refused'))")
    client, sleeps = FakeClient(refused), Sleeps()
    outcome = asyncio.run(provider(client, sleeps, retries=2).query("up"))
    assert outcome.error == "Prometheus unreachable at http://prometheus:9090: [Errno 111] Connection refused"
    assert len(client.queries) == 3
    assert sleeps.calls == [0.5, 1.0]


def test_a_transient_error_followed_by_an_answer_gives_the_answer() -> None:
    client = FakeClient(api_error(503, {"status": "error", "errorType": "unavailable", "error": "busy"}),
                        requests.Timeout("read timed out"), vector("7"))
    outcome = asyncio.run(provider(client).query("up"))
    assert outcome == QueryOutcome(value=7.0)
    assert len(client.queries) == 3


def test_a_timeout_says_how_long_it_waited() -> None:
    outcome = asyncio.run(provider(FakeClient(requests.Timeout("slow")), retries=0).query("up"))
    assert outcome.error == "Prometheus at http://prometheus:9090 did not answer within 3s"


def test_other_http_errors_are_reported_with_their_code() -> None:
    client = FakeClient(api_error(403, {"status": "error", "errorType": "forbidden", "error": "no access"}))
    outcome = asyncio.run(provider(client).query("up"))
    assert outcome.error == "Prometheus at http://prometheus:9090 answered HTTP 403: the request was not authorized"
    assert len(client.queries) == 1


def test_an_unexpected_exception_becomes_an_error_naming_only_its_type() -> None:
    outcome = asyncio.run(provider(FakeClient(KeyError(SECRET))).query("up"))
    assert outcome.error == "unexpected answer from Prometheus at http://prometheus:9090 (KeyError)"


def test_a_connection_error_says_only_its_errno() -> None:
    # The errno comes from the OSError under requests' and urllib3's wrappers, in the system's own words.
    cause = ConnectionResetError(104, f"reset by {SECRET}")
    wrapped = requests.ConnectionError(f"('Connection aborted.', {SECRET})")
    wrapped.__cause__ = cause
    outcome = asyncio.run(provider(FakeClient(wrapped), retries=0).query("up"))
    assert outcome.error == "Prometheus unreachable at http://prometheus:9090: [Errno 104] Connection reset by peer"
    unknown = requests.ConnectionError(f"Remote end closed connection: {SECRET}")
    outcome = asyncio.run(provider(FakeClient(unknown), retries=0).query("up"))
    assert outcome.error == "Prometheus unreachable at http://prometheus:9090: the connection failed"
    resolver = requests.ConnectionError("Failed to resolve 'prometheus' ([Errno -2] Name or service not known)")
    outcome = asyncio.run(provider(FakeClient(resolver), retries=0).query("up"))
    assert outcome.error == "Prometheus unreachable at http://prometheus:9090: [Errno -2] Name or service not known"


def test_other_request_failures_name_only_their_type() -> None:
    outcome = asyncio.run(provider(FakeClient(requests.TooManyRedirects(SECRET)), retries=0).query("up"))
    assert outcome.error == "request to Prometheus at http://prometheus:9090 failed (TooManyRedirects)"
    not_json = requests.exceptions.JSONDecodeError("Expecting value", f"<html>{SECRET}</html>", 0)
    outcome = asyncio.run(provider(FakeClient(not_json)).query("up"))
    assert outcome.error == ("Prometheus at http://prometheus:9090 answered with something that is not JSON; is "
                             "this a Prometheus query API?")


# The worker pool: blocking calls run on a bounded pool of their own, never on the loop's default executor.


class BlockingClient:
    """custom_query blocks until released; records how many calls ran at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.calls = 0

    def custom_query(self, query: str, params: dict[str, Any] | None = None, timeout: Any = None) -> Any:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        try:
            assert self.release.wait(timeout=20), "never released"
            return vector("1")
        finally:
            with self.lock:
                self.running -= 1

    def wait_running(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while self.running < count:
            assert time.monotonic() < deadline, f"only {self.running} of {count} calls started"
            time.sleep(0.01)


async def _saturate(providers: list[PrometheusProvider], client: BlockingClient, queries: int,
                    expect_running: int) -> tuple[list[QueryOutcome], bool]:
    """Start `queries` blocked queries; check the loop's default executor still runs; then release them."""
    tasks = [asyncio.create_task(providers[i % len(providers)].query(f"q{i}")) for i in range(queries)]
    await asyncio.to_thread(client.wait_running, expect_running)
    await asyncio.sleep(0.2)  # room for any call beyond the bound to start
    # Kubernetes I/O goes through the default executor: it must not wait behind Prometheus.
    default_free = await asyncio.wait_for(asyncio.to_thread(lambda: True), timeout=5)
    client.release.set()
    return list(await asyncio.gather(*tasks)), default_free


def test_a_given_pool_bounds_the_calls_that_run_at_once() -> None:
    client = BlockingClient()
    with ThreadPoolExecutor(max_workers=3) as pool:
        prom = PrometheusProvider("http://p:9090", client=client, executor=pool, timeout_s=30.0, retries=0)
        outcomes, default_free = asyncio.run(_saturate([prom], client, queries=10, expect_running=3))
    assert client.most == 3
    assert client.calls == 10
    assert outcomes == [QueryOutcome(value=1.0)] * 10
    assert default_free


def test_providers_share_one_pool_of_eight_workers_by_default() -> None:
    assert DEFAULT_MAX_WORKERS == 8
    shared_query_pool(DEFAULT_MAX_WORKERS)  # as a fresh operator has it, whatever another test resized
    client = BlockingClient()
    providers = [PrometheusProvider(f"http://p{i}:9090", client=client, timeout_s=30.0, retries=0) for i in range(3)]
    # More queries than the loop's default executor has threads: on it, they would starve it.
    outcomes, default_free = asyncio.run(_saturate(providers, client, queries=40, expect_running=8))
    assert client.most == 8
    assert outcomes == [QueryOutcome(value=1.0)] * 40
    assert default_free
    assert shared_query_pool() is shared_query_pool()


def test_the_shared_pool_can_be_resized() -> None:
    first = shared_query_pool()
    try:
        resized = shared_query_pool(2)
        assert resized is not first
        assert shared_query_pool() is resized
        client = BlockingClient()
        prom = PrometheusProvider("http://p:9090", client=client, timeout_s=30.0, retries=0)
        asyncio.run(_saturate([prom], client, queries=6, expect_running=2))
        assert client.most == 2
    finally:
        shared_query_pool(DEFAULT_MAX_WORKERS)
    with pytest.raises(ValueError, match="at least 1"):
        shared_query_pool(0)


def test_a_query_that_never_gets_a_worker_says_so() -> None:
    client = BlockingClient()
    with ThreadPoolExecutor(max_workers=1) as pool:
        busy = PrometheusProvider("http://p:9090", client=client, executor=pool, timeout_s=30.0, retries=0)
        waiting = PrometheusProvider("http://p:9090", client=client, executor=pool, timeout_s=0.2, retries=0)

        async def run() -> QueryOutcome:
            hog = asyncio.create_task(busy.query("slow"))
            await asyncio.to_thread(client.wait_running, 1)
            outcome = await waiting.query("queued")
            client.release.set()
            await hog
            return outcome

        outcome = asyncio.run(run())
    assert outcome.error == ("no worker was free to query Prometheus at http://p:9090 within 1.2s "
                             "(too many queries at once)")
    assert client.calls == 1  # the queued call was withdrawn, not run late


# The real client against a local HTTP server: proves the error wording the provider parses.


class _PrometheusStub(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, dict[str, Any]]] = {}

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query).get("query", [""])[0]
        code, body = self.answers.get(query, (200, {"status": "success",
                                                    "data": {"resultType": "vector", "result": []}}))
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub_prometheus() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _PrometheusStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_the_real_client_maps_values_and_syntax_errors(stub_prometheus: str) -> None:
    _PrometheusStub.answers = {
        "one": (200, {"status": "success", "data": {"resultType": "vector", "result": vector("0.25")}}),
        "bad": (400, {"status": "error", "errorType": "bad_data", "error": "1:4: parse error: unexpected end"}),
    }
    prom = PrometheusProvider(stub_prometheus, timeout_s=2.0, retries=0)
    assert asyncio.run(prom.query("one")) == QueryOutcome(value=0.25)
    assert asyncio.run(prom.query("none")).no_data_reason == "query returned an empty result"
    assert asyncio.run(prom.query("bad")).error == (
        f"Prometheus at {stub_prometheus} answered HTTP 400: the query was rejected as invalid PromQL")


@pytest.mark.parametrize(("code", "phrase"), [(400, "the query was rejected as invalid PromQL"),
                                              (422, "the query could not be executed"),
                                              (500, "internal server error"), (503, "the service is unavailable")])
def test_the_real_client_never_carries_the_body_into_the_message(stub_prometheus: str, code: int,
                                                                  phrase: str) -> None:
    _PrometheusStub.answers = {"q": (code, {"status": "error", "errorType": "x", "error": SECRET})}
    prom = PrometheusProvider(stub_prometheus, timeout_s=2.0, retries=1, sleep=Sleeps())
    outcome = asyncio.run(prom.query("q"))
    assert outcome.error == f"Prometheus at {stub_prometheus} answered HTTP {code}: {phrase}"
    assert "sk-live" not in outcome.error


def test_the_real_client_reports_a_refused_connection() -> None:
    with HTTPServer(("127.0.0.1", 0), _PrometheusStub) as probe:
        port = probe.server_port  # bound, then closed: nothing listens there any more
    prom = PrometheusProvider(f"http://127.0.0.1:{port}", timeout_s=2.0, retries=1, sleep=Sleeps())
    outcome = asyncio.run(prom.query("up"))
    assert outcome.error.startswith(f"Prometheus unreachable at http://127.0.0.1:{port}:")
    assert "refused" in outcome.error.lower()


# --------------------------------------------------------------------------------------------------
# run_checks

CONTEXT = AnalysisContext(namespace="models", target="iris", stable="main", candidate="main-candidate",
                          default_window_s=30)


class FakeProvider:
    """Answers by substring of the query; records every query it was asked."""

    def __init__(self, answers: dict[str, QueryOutcome], default: QueryOutcome | None = None) -> None:
        self.answers = answers
        self.default = default or QueryOutcome.no_data("query returned an empty result")
        self.queries: list[str] = []

    async def query(self, promql: str) -> QueryOutcome:
        self.queries.append(promql)
        return next((o for key, o in self.answers.items() if key in promql), self.default)


COUNT = "increase("


def checks(metrics: list[Metric], fake: FakeProvider, templates: StaticTemplates | None = None,
           min_requests: int = 50, windows: dict[str, float] | None = None,
           context: AnalysisContext = CONTEXT) -> tuple[CheckRecord, ...]:
    return asyncio.run(run_checks(metrics, context, fake, templates or StaticTemplates(),
                                  min_requests=min_requests, windows=windows))


def test_run_checks_judges_every_metric_with_its_rendered_query() -> None:
    fake = FakeProvider({COUNT: QueryOutcome(value=120), 'code=~"5..|': QueryOutcome(value=0.931),
                         "histogram_quantile(0.99": QueryOutcome(value=0.1)})
    results = checks([SUCCESS, LATENCY], fake)
    assert [(r.metric, r.verdict, r.value) for r in results] == [
        ("success-rate", Verdict.FAIL, 0.931), ("latency-p99", Verdict.PASS, 0.1)]
    assert results[0].message == "success-rate = 0.931 is below min 0.99 over 30s"
    assert results[0].query == render_query(BUILTIN_QUERIES["request-success-rate"], VARS)
    assert results[0].window == "30s"
    assert results[0].min == 0.99 and results[1].max == 0.25
    assert fake.queries[0] == render_query(REQUEST_COUNT_QUERY, VARS)  # the request gate goes first
    assert provider_error(results) == ""


def test_too_few_requests_make_every_metric_inconclusive_without_querying_them() -> None:
    fake = FakeProvider({COUNT: QueryOutcome(value=12)}, default=QueryOutcome(value=1.0))
    results = checks([SUCCESS, LATENCY], fake, min_requests=50)
    assert [r.verdict for r in results] == [Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE]
    assert results[0].message == ("success-rate: only 12 requests to predictor main-candidate over 30s "
                                  "(minRequests 50) — inconclusive")
    assert len(fake.queries) == 1
    assert provider_error(results) == ""  # thin traffic is not a configuration problem


class CountsByWindow(FakeProvider):
    """Candidate request counts by the window the count query reads; every other query answers 1.0."""

    def __init__(self, counts: dict[str, float]) -> None:
        super().__init__({}, default=QueryOutcome(value=1.0))
        self.counts = counts

    async def query(self, promql: str) -> QueryOutcome:
        self.queries.append(promql)
        if promql.startswith("sum(increase(") and "seldon_api_executor_server_requests_seconds_count" in promql:
            return next(QueryOutcome(value=v) for w, v in self.counts.items() if f"[{w}]" in promql)
        return self.default


def test_requests_are_counted_over_each_window_a_check_reads() -> None:
    """A wide window's volume must not let a narrower check be judged on a handful of requests."""
    wide = Metric(name="accuracy", query="vector(1)", min=0.9, window_s=120)
    fake = CountsByWindow({"2m": 500, "30s": 12})
    narrow_result, wide_result = checks([SUCCESS, wide], fake, min_requests=50)
    assert narrow_result.verdict is Verdict.INCONCLUSIVE
    assert "only 12 requests to predictor main-candidate over 30s" in narrow_result.message
    assert wide_result.verdict is Verdict.PASS, wide_result.message


def test_metrics_without_a_window_read_the_default_window_not_the_interval() -> None:
    # interval 15s at a 30s scrape: the default window is 4 scrapes, 2m (AnalysisSpec.default_window_s).
    context = AnalysisContext.from_spec(spec(interval="15s", limits=Limits(scrape_interval_s=30)), "models")
    assert context.default_window_s == 120
    fake = FakeProvider({COUNT: QueryOutcome(value=100), 'code=~"5..|': QueryOutcome(value=1.0)})
    result = checks([SUCCESS], fake, context=context)[0]
    assert "[2m]" in fake.queries[0] and "[2m]" in result.query
    assert result.window == "2m"
    assert result.message == "success-rate = 1 is within min 0.99 over 2m"


def test_a_window_override_replaces_the_metrics_window_and_the_gate_counts_over_each_used() -> None:
    wide = Metric(name="accuracy", query="sum(rate(acc[{{interval}}]))", min=0.9, window_s=600)
    fake = CountsByWindow({"45s": 100, "30s": 100, "20s": 100})
    results = checks([SUCCESS, LATENCY, wide], fake, windows={"accuracy": 45, "latency-p99": 20})
    counted = [q for q in fake.queries if "seldon_api_executor_server_requests_seconds_count" in q
               and q.startswith("sum(increase(")]
    assert sorted(q[q.index("[") + 1:q.index("]")] for q in counted) == ["20s", "30s", "45s"]  # never 10m
    assert [(r.metric, r.window) for r in results] == [("success-rate", "30s"), ("latency-p99", "20s"),
                                                       ("accuracy", "45s")]
    assert results[2].query == "sum(rate(acc[45s]))"
    assert "[20s]" in results[1].query and "[30s]" in results[0].query


def test_a_gated_run_reports_the_overridden_windows() -> None:
    fake = FakeProvider({COUNT: QueryOutcome(value=3)})
    results = checks([SUCCESS, LATENCY], fake, windows={"success-rate": 12.4})
    assert sorted(q[q.rindex("[") + 1:q.rindex("]")] for q in fake.queries) == ["12s", "30s"]  # one count each
    assert [r.window for r in results] == ["12s", "30s"]
    assert "only 3 requests to predictor main-candidate over 12s" in results[0].message
    assert "only 3 requests to predictor main-candidate over 30s" in results[1].message


@pytest.mark.parametrize("seconds", [0.0, -5.0, math.nan, math.inf])
def test_an_override_that_is_not_a_usable_window_reads_the_shortest_window(seconds: float) -> None:
    fake = FakeProvider({COUNT: QueryOutcome(value=100)}, default=QueryOutcome(value=1.0))
    result = checks([SUCCESS], fake, windows={"success-rate": seconds})[0]
    assert result.window == "1s"
    assert "[1s]" in fake.queries[0]


def test_no_request_data_at_all_counts_as_zero_requests() -> None:
    results = checks([SUCCESS], FakeProvider({}))
    assert results[0].verdict is Verdict.INCONCLUSIVE
    assert "only 0 requests" in results[0].message


def test_a_failing_request_count_makes_every_metric_inconclusive_and_is_a_provider_error() -> None:
    fake = FakeProvider({COUNT: QueryOutcome.failed("Prometheus unreachable at http://p:9090: refused")})
    results = checks([SUCCESS, LATENCY], fake)
    assert {r.verdict for r in results} == {Verdict.INCONCLUSIVE}
    assert "cannot count candidate requests: Prometheus unreachable" in results[1].message
    assert provider_error(results) == "Prometheus unreachable at http://p:9090: refused"


def test_min_requests_zero_skips_the_gate() -> None:
    fake = FakeProvider({}, default=QueryOutcome(value=0.995))
    results = checks([SUCCESS], fake, min_requests=0)
    assert results[0].verdict is Verdict.PASS
    assert fake.queries == [results[0].query]


def test_no_data_is_inconclusive_and_says_for_which_predictor() -> None:
    fake = FakeProvider({COUNT: QueryOutcome(value=100)})
    results = checks([LATENCY], fake)
    assert results[0].verdict is Verdict.INCONCLUSIVE
    assert results[0].message == ("latency-p99: no data for predictor main-candidate over 30s (query returned an "
                                  "empty result) — inconclusive, never a pass")
    assert results[0].error == ""


def test_custom_queries_are_rendered_with_their_own_window() -> None:
    custom = Metric(name="custom", query='sum(rate(my_metric{predictor_name="{{candidate}}"}[{{interval}}]))',
                    window_s=120, max=5)
    fake = FakeProvider({COUNT: QueryOutcome(value=100), "my_metric": QueryOutcome(value=7)})
    result = checks([custom], fake)[0]
    assert result.query == 'sum(rate(my_metric{predictor_name="main-candidate"}[2m]))'
    assert result.window == "2m"
    assert result.verdict is Verdict.FAIL
    assert result.message == "custom = 7 is above max 5 over 2m"


def test_an_unknown_variable_is_an_inconclusive_configuration_error() -> None:
    custom = Metric(name="custom", query="sum(x{m='{{model}}'})", max=1)
    result = checks([custom], FakeProvider({COUNT: QueryOutcome(value=100)}))[0]
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "unknown variable {{model}}" in result.message
    assert "unknown variable {{model}}" in provider_error((result,))


def test_analysis_templates_are_looked_up_in_the_rollouts_namespace() -> None:
    ref = Metric(name="drift", template_ref="prediction-drift", max=0.2)
    templates = StaticTemplates({("models", "prediction-drift"): "avg(drift{predictor='{{candidate}}'})"})
    fake = FakeProvider({COUNT: QueryOutcome(value=100), "drift": QueryOutcome(value=0.05)})
    result = checks([ref], fake, templates)[0]
    assert result.verdict is Verdict.PASS
    assert result.query == "avg(drift{predictor='main-candidate'})"


def test_a_missing_analysis_template_is_inconclusive_and_a_provider_error() -> None:
    ref = Metric(name="drift", template_ref="prediction-drift", max=0.2)
    fake = FakeProvider({COUNT: QueryOutcome(value=100)})
    results = checks([ref, LATENCY], fake, StaticTemplates({("other", "prediction-drift"): "x"}))
    assert results[0].verdict is Verdict.INCONCLUSIVE
    assert results[0].message == ("drift: AnalysisTemplate 'prediction-drift' not found in namespace models "
                                  "— inconclusive")
    assert provider_error(results) == "AnalysisTemplate 'prediction-drift' not found in namespace models"
    assert results[1].metric == "latency-p99"  # the other metrics still run


def test_a_broken_template_source_or_provider_does_not_stop_the_run() -> None:
    class Broken:
        async def get(self, namespace: str, name: str) -> str | None:
            raise RuntimeError("apiserver said 500")

        async def query(self, promql: str) -> QueryOutcome:
            raise RuntimeError("boom")

    ref = Metric(name="drift", template_ref="prediction-drift", max=0.2)
    broken = Broken()
    results = asyncio.run(run_checks([ref, SUCCESS], CONTEXT, broken, broken, min_requests=0))
    assert "could not be read: apiserver said 500" in results[0].message
    assert "metric provider failed: RuntimeError: boom" in results[1].message
    assert {r.verdict for r in results} == {Verdict.INCONCLUSIVE}


def test_an_api_error_reading_a_template_is_reported_by_its_status_code_only() -> None:
    class ApiError(Exception):  # shaped like kubernetes.client.ApiException: its text has headers and body
        status = 403

        def __str__(self) -> str:
            return f"(403)\nReason: Forbidden\nHTTP response headers: {{...}}\nHTTP response body: {SECRET}"

    class Failing:
        async def get(self, namespace: str, name: str) -> str | None:
            raise ApiError()

    ref = Metric(name="drift", template_ref="prediction-drift", max=0.2)
    result = asyncio.run(run_checks([ref], CONTEXT, FakeProvider({}), Failing(), min_requests=0))[0]
    assert result.message == ("drift: AnalysisTemplate 'prediction-drift' could not be read: the API server "
                              "answered HTTP 403 — inconclusive")


def test_no_metrics_means_no_queries() -> None:
    fake = FakeProvider({})
    assert checks([], fake) == ()
    assert fake.queries == []


def spec(interval: str = "30s", limits: Limits | None = None) -> RolloutSpec:
    return RolloutSpec.parse({
        "targetRef": {"kind": "SeldonDeployment", "name": "iris"},
        "stablePredictor": "main",
        "candidate": {"modelUri": "file:///models/iris/2.0.0", "version": "2.0.0"},
        "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
        "analysis": {"interval": interval, "minRequests": 0,
                     "metrics": [{"name": "success-rate", "template": "request-success-rate", "min": 0.99}]},
    }, limits)


def test_context_from_spec_gives_the_candidate_version_and_no_stable_version_unless_told() -> None:
    context = AnalysisContext.from_spec(spec(interval="45s", limits=Limits(scrape_interval_s=1)), "models")
    assert (context.candidate_version, context.stable_version) == ("2.0.0", "")
    variables = context.variables()
    assert (variables.candidate_version, variables.stable_version) == ("2.0.0", "")
    assert render_query('v="{{candidateVersion}}"', variables) == 'v="2.0.0"'
    with pytest.raises(QueryError, match="stable version unknown"):
        render_query('v="{{stableVersion}}"', variables)
    told = AnalysisContext.from_spec(spec(interval="45s", limits=Limits(scrape_interval_s=1)), "models",
                                     stable_version="1.0.0")
    assert render_query("{{candidateVersion}}>{{stableVersion}}", told.variables(30)) == "2.0.0>1.0.0"


def test_a_query_on_an_unknown_stable_version_is_inconclusive_and_never_sent() -> None:
    context = AnalysisContext.from_spec(spec(interval="45s", limits=Limits(scrape_interval_s=1)), "models")
    versus = Metric(name="versus-stable", query='x{v="{{stableVersion}}"}', min=0.9)
    accuracy = Metric(name="accuracy", min=0.9, query=(
        'sum(rate(feedback_outcomes_total{served_model_version="{{candidateVersion}}",outcome="correct"}'
        '[{{interval}}]))'))
    fake = FakeProvider({COUNT: QueryOutcome(value=100), "served_model_version": QueryOutcome(value=0.95)})
    results = {r.metric: r for r in checks([versus, accuracy], fake, context=context)}
    assert results["versus-stable"].verdict == Verdict.INCONCLUSIVE
    assert "stable version unknown" in results["versus-stable"].message
    assert results["versus-stable"].error and results["versus-stable"].query == ""
    assert results["accuracy"].verdict == Verdict.PASS
    assert 'served_model_version="2.0.0"' in results["accuracy"].query
    assert not any("{{" in q or 'v="' in q for q in fake.queries)


def test_context_from_spec_uses_the_candidate_predictor_name_and_the_default_window() -> None:
    context = AnalysisContext.from_spec(spec(interval="45s", limits=Limits(scrape_interval_s=1)), "models")
    assert (context.target, context.stable, context.candidate, context.default_window_s) == (
        "iris", "main", "main-candidate", 45.0)
    slow_scrapes = AnalysisContext.from_spec(spec(interval="45s", limits=Limits(scrape_interval_s=30)), "models")
    assert slow_scrapes.default_window_s == 120  # four 30s scrapes, more than the interval
    assert slow_scrapes.variables().interval == "2m"


def test_a_check_is_one_record_from_the_runner_to_the_status() -> None:
    fake = FakeProvider({COUNT: QueryOutcome(value=120), 'code=~"5..|': QueryOutcome(value=0.93)})
    record = checks([SUCCESS], fake)[0]
    assert isinstance(record, CheckRecord) and record.verdict is Verdict.FAIL and record.min == 0.99
    persisted = CheckRecord.from_dict(record.to_dict())
    assert (persisted.metric, persisted.verdict, persisted.value, persisted.query, persisted.window) == (
        "success-rate", Verdict.FAIL, 0.93, record.query, "30s")
    assert record.to_dict()["verdict"] == "Fail" and "error" not in record.to_dict()


def test_outcome_number_rejects_nan() -> None:
    assert QueryOutcome.number(math.nan).value is None
    assert QueryOutcome.number(0.0) == QueryOutcome(value=0.0)


# --------------------------------------------------------------------------------------------------
# Measure, then judge: a judge that compares gets the stable's value over the same window


class Comparing:
    """A judge that asks for the baseline and records what it was handed."""

    needs_baseline = True

    def __init__(self) -> None:
        self.seen: list[Measurement] = []

    def judge(self, metric: Metric, measured: Measurement) -> tuple[Verdict, str]:
        self.seen.append(measured)
        if measured.baseline is None:
            return Verdict.INCONCLUSIVE, f"{metric.name}: no baseline ({measured.baseline_no_data_reason})"
        worse = measured.value is not None and measured.value < measured.baseline
        return (Verdict.FAIL if worse else Verdict.PASS), f"{metric.name}: {measured.value} vs {measured.baseline}"


def _comparing_run(fake: FakeProvider, context: AnalysisContext = CONTEXT) -> tuple[Comparing, CheckRecord]:
    judge = Comparing()
    result = asyncio.run(run_checks([SUCCESS], context, fake, StaticTemplates(),
                                    judges={JudgeKind.THRESHOLD: judge}))[0]
    return judge, result


def test_a_comparing_judge_gets_the_stable_measured_by_the_same_template_over_the_same_window() -> None:
    fake = FakeProvider({'predictor_name="main-candidate"': QueryOutcome(value=0.95),
                         'predictor_name="main"': QueryOutcome(value=0.99)})
    judge, result = _comparing_run(fake)
    measured = judge.seen[0]
    assert (measured.value, measured.baseline) == (0.95, 0.99)
    assert measured.baseline_query == measured.query.replace('predictor_name="main-candidate"',
                                                             'predictor_name="main"')
    assert 'predictor_name="main-candidate"' not in measured.baseline_query
    assert (result.verdict, result.baseline, result.baseline_query) == (Verdict.FAIL, 0.99, measured.baseline_query)
    assert CheckRecord.from_dict(result.to_dict()).baseline == 0.99  # kept on the status


def test_a_baseline_that_cannot_be_had_leaves_the_judge_without_one_never_a_guess() -> None:
    fake = FakeProvider({'predictor_name="main-candidate"': QueryOutcome(value=0.95),
                         'predictor_name="main"': QueryOutcome.failed("connection refused")})
    judge, result = _comparing_run(fake)
    assert judge.seen[0].baseline is None and judge.seen[0].baseline_no_data_reason == "connection refused"
    assert result.verdict is Verdict.INCONCLUSIVE and result.value == 0.95


def test_a_threshold_judge_asks_for_no_baseline() -> None:
    fake = FakeProvider({COUNT: QueryOutcome(value=120), 'code=~"5..|': QueryOutcome(value=0.999)})
    result = checks([SUCCESS], fake)[0]
    assert result.baseline is None and not result.baseline_query
    assert not any('predictor_name="main"' in q for q in fake.queries)


# --------------------------------------------------------------------------------------------------
# Comparison shapes: each side's counts or series, measured by the same template


class ByLabel(FakeProvider):
    """FakeProvider that also answers queries by a label, by substring."""

    def __init__(self, answers: dict[str, QueryOutcome], by: dict[str, QueryOutcome]) -> None:
        super().__init__(answers)
        self.by = by
        self.labels: list[str] = []

    async def query_by(self, promql: str, label: str) -> QueryOutcome:
        self.queries.append(promql)
        self.labels.append(label)
        return next((o for key, o in self.by.items() if key in promql), QueryOutcome.no_data("empty"))


class Recorder:
    needs_baseline = True

    def __init__(self) -> None:
        self.seen: list[Measurement] = []

    def judge(self, metric: Metric, measured: Measurement) -> tuple[Verdict, str]:
        self.seen.append(measured)
        return Verdict.PASS, f"{metric.name}: seen"


def compared(metric: Metric, fake: FakeProvider) -> tuple[Measurement, CheckRecord]:
    recorder = Recorder()
    result = asyncio.run(run_checks([metric], CONTEXT, fake, StaticTemplates(),
                                    judges={JudgeKind.COMPARE: recorder}))[0]
    assert recorder.seen, result.message
    return recorder.seen[0], result


RATE_COMPARED = Metric(name="success-rate", template="request-success-rate", judge=JudgeKind.COMPARE,
                       compare=Compare(tolerance=0.01))
CAND, STAB = 'predictor_name="main-candidate"', 'predictor_name="main"'


def test_a_proportion_is_successes_and_trials_on_both_sides() -> None:
    fake = FakeProvider({f"{CAND},service": QueryOutcome(value=1000.0), f"{STAB},service": QueryOutcome(value=4000.0)})
    fake.answers = {f'{CAND},service=~"{PREDICTION_SERVICES}",code!~': QueryOutcome(value=950.0),
                    f'{STAB},service=~"{PREDICTION_SERVICES}",code!~': QueryOutcome(value=3960.0), **fake.answers}
    measured, result = compared(RATE_COMPARED, fake)
    assert (measured.shape, measured.candidate.counts, measured.stable.counts) == (
        Shape.PROPORTION, (950.0, 1000.0), (3960.0, 4000.0))
    assert (result.value, result.baseline) == (0.95, 0.99)
    assert len(fake.queries) == 4 and sum(STAB in q for q in fake.queries) == 2


def test_a_histogram_and_a_distribution_are_series_by_their_label() -> None:
    latency = Metric(name="latency", template="request-duration-p99", judge=JudgeKind.COMPARE,
                     compare=Compare(tolerance=0.2))
    fake = ByLabel({}, {CAND: QueryOutcome.by_label({"0.1": 5.0, "+Inf": 9.0}),
                        STAB: QueryOutcome.by_label({"0.1": 50.0, "+Inf": 60.0})})
    measured, _ = compared(latency, fake)
    assert measured.shape is Shape.HISTOGRAM and fake.labels == ["le", "le"]
    assert (measured.candidate.series, measured.stable.series) == ({"0.1": 5.0, "+Inf": 9.0},
                                                                   {"0.1": 50.0, "+Inf": 60.0})
    drift = Metric(name="drift", template="prediction-distribution", judge=JudgeKind.COMPARE,
                   compare=Compare(max_psi=0.2))
    fake = ByLabel({}, {'served_model_version="2.0.0"': QueryOutcome.by_label({"7": 3.0}),
                        'served_model_version="1.0.0"': QueryOutcome.by_label({"7": 1.0, "1": 1.0})})
    context_with_stable = replace(CONTEXT, candidate_version="2.0.0", stable_version="1.0.0")
    recorder = Recorder()
    asyncio.run(run_checks([drift], context_with_stable, fake, StaticTemplates(), judges={JudgeKind.COMPARE: recorder}))
    assert fake.labels == ["class", "class"]
    assert (recorder.seen[0].candidate.series, recorder.seen[0].stable.series) == ({"7": 3.0}, {"7": 1.0, "1": 1.0})


def test_a_stable_side_that_fails_is_left_empty_and_a_candidate_side_that_fails_is_an_error() -> None:
    fake = FakeProvider({CAND: QueryOutcome(value=100.0), STAB: QueryOutcome.failed("connection refused")})
    measured, _ = compared(RATE_COMPARED, fake)
    assert measured.candidate.counts == (100.0, 100.0) and not measured.stable.measured
    assert measured.stable.no_data_reason == "connection refused"
    broken = FakeProvider({CAND: QueryOutcome.failed("connection refused")})
    result = asyncio.run(run_checks([RATE_COMPARED], CONTEXT, broken, StaticTemplates(),
                                    judges={JudgeKind.COMPARE: Recorder()}))[0]
    assert result.verdict is Verdict.INCONCLUSIVE and result.error == "connection refused"


def test_a_metric_whose_judge_this_operator_lacks_is_inconclusive_never_a_crash(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from modelrollout.analysis import runner

    monkeypatch.setattr(runner, "JUDGES", {JudgeKind.THRESHOLD: ThresholdJudge()})
    result = asyncio.run(run_checks([RATE_COMPARED], CONTEXT, FakeProvider({}), StaticTemplates()))[0]
    assert result.verdict is Verdict.INCONCLUSIVE and result.error == "this operator has no compare judge"


def test_an_analysis_template_declares_its_comparison_shape() -> None:
    template = template_from_spec({"query": "v", "proportion": {"successes": "s", "trials": "t"}})
    assert template.comparable is Shape.PROPORTION and template.value == "v"
    histogram = template_from_spec({"histogram": {"buckets": "sum by (le) (x)"}})
    assert histogram.comparable is Shape.HISTOGRAM and histogram.histogram is not None
    assert histogram.histogram.by == "le"
    drift = template_from_spec({"distribution": {"counts": "sum by (class) (x)", "by": "class"}})
    assert drift.comparable is Shape.DISTRIBUTION and not drift.value


class ParamsClient(FakeClient):
    def __init__(self, *script: Any) -> None:
        super().__init__(*script)
        self.params: list[dict[str, Any] | None] = []

    def custom_query(self, query: str, params: dict[str, Any] | None = None, timeout: Any = None) -> Any:
        self.params.append(params)
        return super().custom_query(query, params, timeout)


def test_every_query_of_one_analysis_is_evaluated_at_the_same_instant() -> None:
    """Successes and trials, candidate and stable: one evaluation time for all, so a scrape landing
    between two queries cannot skew one count against the other."""
    client = ParamsClient([{"metric": {"deployment_name": "iris", "predictor_name": predictor}, "value": [0, "1000"]}
                           for predictor in ("main", "main-candidate")])
    provider = PrometheusProvider("http://prom:9090", client=client, executor=ThreadPoolExecutor(2))
    compared = Metric(name="success-rate", template="request-success-rate", judge=JudgeKind.COMPARE,
                      compare=Compare(tolerance=0.01))
    before = time.time()
    results = asyncio.run(run_checks([compared, SUCCESS], CONTEXT, provider, StaticTemplates(), min_requests=10))
    assert [r.verdict for r in results] == [Verdict.PASS, Verdict.PASS]
    # The grouped forms: the request count (the gate and both sides' trials), the successes (both sides),
    # the threshold's value; each asked once.
    assert len(client.params) == 3 and len(set(client.queries)) == 3
    times = {p["time"] for p in client.params if p}
    assert len(times) == 1 and all(p is not None for p in client.params)
    assert before <= float(times.pop()) <= time.time() + 1  # the next whole second
    assert provider._at is None  # the shared provider itself is not pinned
