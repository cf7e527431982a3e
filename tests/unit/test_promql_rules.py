"""The builtin queries evaluated by Prometheus's own engine (``promtool test rules``).

Each case renders every builtin query the way the operator does (``AnalysisContext.from_spec`` and
``render_check_query``), alone and in its grouped form (``grouped_rules``), writes them as recording rules,
and feeds promtool input series shaped like the Seldon Core v1 executor's:
``seldon_api_executor_server_requests_seconds_{count,sum,bucket}`` with the labels deployment_name,
predictor_name, predictor_version, service, method and code, the ``namespace`` label the scrape adds, and
the executor's buckets. Then it asserts what each query answers: a number, or no data
(which the operator judges inconclusive, never a pass).

promtool comes from Debian's ``prometheus`` package (``make system-deps``). Without it these tests fail:
they are the only proof that the queries mean what their comments say.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelrollout.analysis import AnalysisContext
from modelrollout.analysis.runner import CheckQuery, render_check_query
from modelrollout.api import Limits, RolloutSpec, SpecError, format_duration, parse_duration
from modelrollout.backends.seldon_v1_queries import BUILTIN_QUERIES, BUILTIN_TEMPLATES, REQUEST_METRIC
from modelrollout.templates import Part

from tests.unit.grouped_rules import with_grouped

NAMESPACE, TARGET, STABLE, CANDIDATE = "models", "iris", "main", "main-candidate"
# The Seldon Core v1 executor's histogram buckets (+Inf added below).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
EVALUATION_INTERVAL = "15s"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None and os.access("/usr/bin/promtool", os.X_OK):
        found = "/usr/bin/promtool"  # Debian's path, when /usr/bin is not on PATH
    if found is None:
        pytest.fail("promtool is not installed: it comes with Debian's prometheus package. Run `make system-deps` "
                    "(or `apt-get install prometheus`); CI does so before the tests. These tests do not skip.",
                    pytrace=False)
    return found


def spec(interval: str, metrics: list[dict[str, Any]] | None = None, *, scrape_interval_s: float) -> RolloutSpec:
    return RolloutSpec.parse({
        "targetRef": {"kind": "SeldonDeployment", "name": TARGET},
        "stablePredictor": STABLE,
        "candidate": {"modelUri": "file:///models/iris/2.0.0", "version": "2.0.0"},
        "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
        "analysis": {"interval": interval, "metrics": metrics or [
            {"name": name, "template": name, "min": 0} for name in BUILTIN_QUERIES]},
    }, Limits(scrape_interval_s=scrape_interval_s))


# --------------------------------------------------------------------------------------------------
# Input series


@dataclass(frozen=True)
class Traffic:
    """Requests that one executor label set counts, per scrape, for `grows` scrapes (then flat for `flat`).

    `latency` says how many of each scrape's requests took at most each bucket's upper bound (the bucket
    they fall in, not cumulative); its counts add up to the requests per scrape.
    """

    predictor: str
    latency: Mapping[float, int]
    code: str = "200"
    service: str = "predictions"
    namespace: str = NAMESPACE
    deployment: str = TARGET
    namespace_label: str = "namespace"  # the scrape adds it: a PodMonitor's `namespace`, or `kubernetes_namespace`
    method: str = "post"  # REST; "unary" for gRPC

    @property
    def per_scrape(self) -> int:
        return sum(self.latency.values())

    def labels(self) -> str:
        version = "2.0.0" if self.predictor == CANDIDATE else "1.0.0"
        return (f'{self.namespace_label}="{self.namespace}",deployment_name="{self.deployment}",'
                f'predictor_name="{self.predictor}",predictor_version="{version}",service="{self.service}",'
                f'method="{self.method}",code="{self.code}"')

    def series(self, grows: int, flat: int) -> list[dict[str, str]]:
        def counter(step: float) -> str:
            values = f"0+{step:g}x{grows}"
            return values + (f" {step * grows:g}+0x{flat - 1}" if flat else "")

        out = []
        for bound in (*BUCKETS, math.inf):
            le = "+Inf" if bound == math.inf else f"{bound:g}"
            below = sum(n for upper, n in self.latency.items() if upper <= bound)
            out.append({"series": f"{REQUEST_METRIC}_bucket{{{self.labels()},le=\"{le}\"}}",
                        "values": counter(below)})
        total_seconds = sum(upper * n for upper, n in self.latency.items())  # each at its bucket's bound
        out.append({"series": f"{REQUEST_METRIC}_sum{{{self.labels()}}}", "values": counter(total_seconds)})
        out.append({"series": f"{REQUEST_METRIC}_count{{{self.labels()}}}", "values": counter(self.per_scrape)})
        return out


# 100 requests a scrape: 10 up to 25ms, 30 up to 50ms, 20 up to 75ms, 20 up to 100ms, 10 up to 250ms, 6 up to
# 500ms, 4 up to 750ms. Cumulative 10, 40, 60, 80, 90, 96, 100: the median is halfway through the 50-75ms
# bucket (62.5ms), p90 the top of the 100-250ms bucket (250ms), p99 three quarters into 500-750ms (687.5ms).
KNOWN = {0.025: 10, 0.05: 30, 0.075: 20, 0.1: 20, 0.25: 10, 0.5: 6, 0.75: 4}
KNOWN_QUANTILES = {"request-duration-p50": 0.0625, "request-duration-p90": 0.25, "request-duration-p99": 0.6875}


def scaled(latency: Mapping[float, int], share: float) -> dict[float, int]:
    return {bound: round(n * share) for bound, n in latency.items()}


FAST = {0.005: 100}  # what feedback requests look like: they would pull every quantile down
SLOW = {2.5: 50, 10.0: 50}  # the stable predictor in these cases: it would push every quantile up

# Series that must never count: the stable predictor (with errors), the candidate's feedback requests
# (with errors too), and a same-named deployment in another namespace.
NOISE = (
    Traffic(STABLE, SLOW),
    Traffic(STABLE, scaled(SLOW, 0.2), code="503"),
    Traffic(STABLE, scaled(FAST, 0.3), service="feedback"),
    Traffic(CANDIDATE, FAST, service="feedback"),
    Traffic(CANDIDATE, scaled(FAST, 0.5), code="500", service="feedback"),
    Traffic(CANDIDATE, SLOW, code="500", namespace="other"),
)


# --------------------------------------------------------------------------------------------------
# Cases


class NoData:
    """The query answers nothing at all: an empty result."""

    def __repr__(self) -> str:
        return "empty"


class NoNumber:
    """The query answers NaN or nothing: no number a threshold could be compared with."""

    def __repr__(self) -> str:
        return "NaN or empty"


EMPTY, NOT_A_NUMBER = NoData(), NoNumber()
Expected = float | NoData | NoNumber


@dataclass(frozen=True)
class Case:
    name: str
    traffic: tuple[Traffic, ...]
    expected: Mapping[str, Expected]
    scrape_interval_s: float = 1.0
    analysis_interval: str = "15s"  # at a 1s scrape the default window is the interval
    window: str | None = None  # a window the spec could not set (too short); None: the default window
    grows: int = 90  # scrapes during which the traffic flows
    flat: int = 0  # scrapes after it stopped
    eval_time: str = "60s"
    extra_series: tuple[dict[str, str], ...] = ()
    namespace_label: str = "namespace"  # the operator's --namespace-label

    def window_s(self) -> float:
        if self.window:
            return parse_duration(self.window)
        parsed = spec(self.analysis_interval, scrape_interval_s=self.scrape_interval_s)
        return parsed.analysis.window_s(parsed.analysis.metrics[0])

    def queries(self, window_s: float) -> dict[str, CheckQuery]:
        """Each builtin value query as the operator renders it: alone, and in its grouped form if it has one."""
        parsed = spec(self.analysis_interval, scrape_interval_s=self.scrape_interval_s)
        context = AnalysisContext.from_spec(parsed, NAMESPACE, namespace_label=self.namespace_label)
        return {name: render_check_query(BUILTIN_TEMPLATES[name], Part.VALUE, context.variables(window_s))
                for name in BUILTIN_QUERIES}


def _with_mesh(expected: dict[str, Expected]) -> dict[str, Expected]:
    """Without mesh series the mesh-aware success rate is the plain one, except that "nothing at all" is
    0/0 there (no number) rather than an empty result: either way no data, never a pass."""
    plain = expected["request-success-rate"]
    expected.setdefault("request-success-rate-with-mesh", NOT_A_NUMBER if isinstance(plain, NoData) else plain)
    return expected


def every(value: Expected, **others: Expected) -> dict[str, Expected]:
    return _with_mesh({name: others.get(name.replace("-", "_"), value) for name in BUILTIN_QUERIES
                       if name != "request-success-rate-with-mesh" or name.replace("-", "_") in others})


def with_quantiles(quantiles: Mapping[str, float], **values: Expected) -> dict[str, Expected]:
    return _with_mesh({**quantiles, **{name.replace("_", "-"): v for name, v in values.items()}})


# 95 of every 100 candidate requests answer 2xx, 3 answer 500 and 2 answer 503; their latencies add up to KNOWN.
MIXED = (
    Traffic(CANDIDATE, {0.025: 10, 0.05: 27, 0.075: 18, 0.1: 20, 0.25: 10, 0.5: 6, 0.75: 4}),
    Traffic(CANDIDATE, {0.05: 3}, code="500"),
    Traffic(CANDIDATE, {0.075: 2}, code="503"),
)

CASES = [
    Case("healthy candidate: only 2xx, success rate 1",
         (Traffic(CANDIDATE, KNOWN), *NOISE),
         with_quantiles(KNOWN_QUANTILES, request_success_rate=1.0, request_count=1500.0)),
    Case("mixed: 5 of every 100 candidate requests are 5xx, success rate 0.95",
         (*MIXED, *NOISE),
         with_quantiles(KNOWN_QUANTILES, request_success_rate=0.95, request_count=1500.0)),
    Case("only 5xx: success rate 0, a failure, not no data",
         (Traffic(CANDIDATE, {0.01: 50, 0.025: 10}, code="500"), Traffic(CANDIDATE, {0.025: 40}, code="503"),
          *NOISE),
         # 50 up to 10ms, 50 more up to 25ms: p50 is the top of the first, p90 and p99 interpolate the second.
         with_quantiles({"request-duration-p50": 0.01, "request-duration-p90": 0.022,
                         "request-duration-p99": 0.0247}, request_success_rate=0.0, request_count=1500.0)),
    Case("no executor series at all: no data",
         (), every(EMPTY),
         extra_series=({"series": 'up{job="seldon-executor",namespace="models"}', "values": "1+0x90"},)),
    Case("the stable predictor serves, the candidate has no series: no data",
         NOISE[:3], every(EMPTY)),
    Case("the candidate answered feedback only, no predictions: no data",
         NOISE[3:5], every(EMPTY)),
    Case("requests stopped: flat counters give no number, and a count of 0",
         (Traffic(CANDIDATE, KNOWN), Traffic(CANDIDATE, {0.05: 5}, code="503"), *NOISE),
         every(NOT_A_NUMBER, request_count=0.0), grows=30, flat=60, eval_time="75s"),
    Case("30s scrapes, the default window (4 scrapes, 2m): an answer",
         (*MIXED, *NOISE),
         with_quantiles(KNOWN_QUANTILES, request_success_rate=0.95, request_count=400.0),
         scrape_interval_s=30.0, grows=25, eval_time="9m45s"),
    # gRPC: the executor labels service with the full method, method "unary", code with the status name.
    Case("gRPC: 95 OK and 5 Unavailable of every 100 Predict calls, success rate 0.95",
         (Traffic(CANDIDATE, {0.025: 10, 0.05: 27, 0.075: 18, 0.1: 20, 0.25: 10, 0.5: 6, 0.75: 4}, code="OK",
                  service="/seldon.protos.Seldon/Predict", method="unary"),
          Traffic(CANDIDATE, {0.05: 3, 0.075: 2}, code="Unavailable", service="/seldon.protos.Seldon/Predict",
                  method="unary"),
          Traffic(CANDIDATE, {0.01: 7}, code="InvalidArgument", service="/seldon.protos.Seldon/SendFeedback",
                  method="unary"),
          *NOISE),
         with_quantiles(KNOWN_QUANTILES, request_success_rate=0.95, request_count=1500.0)),
    Case("a scrape that names the namespace label kubernetes_namespace (Seldon's analytics chart)",
         tuple(replace(t, namespace_label="kubernetes_namespace") for t in (*MIXED, *NOISE)),
         with_quantiles(KNOWN_QUANTILES, request_success_rate=0.95, request_count=1500.0),
         namespace_label="kubernetes_namespace"),
    Case("kubernetes_namespace series, queried as namespace: no data (the setting must match the scrape)",
         tuple(replace(t, namespace_label="kubernetes_namespace") for t in (*MIXED, *NOISE)), every(EMPTY)),
    # Istio's gateway answered 5 of every 100 requests for the candidate with a 503 (no ready pod): they
    # never reached its executor, so only the mesh-aware success rate sees them.
    Case("mesh 503s: 95 requests a scrape reach the executor, 5 more fail at the mesh",
         (Traffic(CANDIDATE, {0.025: 10, 0.05: 25, 0.075: 20, 0.1: 20, 0.25: 10, 0.5: 6, 0.75: 4}), *NOISE),
         with_quantiles({"request-duration-p50": 0.0656, "request-duration-p90": 0.2708,
                         "request-duration-p99": 0.6906}, request_success_rate=1.0,
                        request_success_rate_with_mesh=0.95, request_count=1425.0),
         extra_series=({"series": 'istio_requests_total{reporter="source",destination_service_namespace="models",'
                                  'destination_service_name="iris-main-candidate",response_code="503",'
                                  'response_flags="UH"}', "values": "0+5x90"},
                       {"series": 'istio_requests_total{reporter="source",destination_service_namespace="models",'
                                  'destination_service_name="iris-main",response_code="503",'
                                  'response_flags="UH"}', "values": "0+50x90"})),
    # Evaluated between two scrapes, as a query is in general: a 30s range holds one sample and rate()
    # needs two. That is why a window under four scrapes is refused (see the test below).
    Case("30s scrapes, a 30s window: no data",
         (*MIXED, *NOISE), every(EMPTY),
         scrape_interval_s=30.0, window="30s", grows=25, eval_time="9m45s"),
]


def record_name(builtin: str) -> str:
    return "modelrollout:" + builtin.replace("-", "_")


def assertion(builtin: str, expected: Expected, eval_time: str) -> dict[str, Any]:
    name = record_name(builtin)
    if isinstance(expected, NoData):
        return {"expr": name, "eval_time": eval_time, "exp_samples": []}
    if isinstance(expected, NoNumber):  # NaN never equals itself: no sample survives either way
        return {"expr": f"{name} == {name}", "eval_time": eval_time, "exp_samples": []}
    # rate() extrapolates, and how its floating point rounds differs between Prometheus versions; to the
    # nearest 0.0001 every expected value here is exact.
    return {"expr": f"round({name}, 0.0001)", "eval_time": eval_time,
            "exp_samples": [{"labels": "{}", "value": expected}]}


def write_files(case: Case, directory: Path) -> tuple[Path, Path]:
    queries = {record_name(builtin): query for builtin, query in case.queries(case.window_s()).items()}
    rules, assertions = with_grouped(
        [{"record": record, "expr": query.text} for record, query in queries.items()],
        [assertion(builtin, case.expected[builtin], case.eval_time) for builtin in BUILTIN_QUERIES], queries)
    series = [s for traffic in case.traffic for s in traffic.series(case.grows, case.flat)]
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": EVALUATION_INTERVAL,
        "tests": [{
            "name": case.name,
            "interval": format_duration(case.scrape_interval_s),
            "input_series": [*series, *case.extra_series],
            "promql_expr_test": assertions,
        }],
    }
    rules_path, tests_path = directory / "rules.yml", directory / "tests.yml"
    rules_path.write_text(yaml.safe_dump({"groups": [{"name": "modelrollout-builtins", "interval": EVALUATION_INTERVAL,
                                                      "rules": rules}]}, sort_keys=False, width=1000))
    tests_path.write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    return rules_path, tests_path


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("case", CASES, ids=[c.name.split(":")[0] for c in CASES])
def test_builtin_queries_under_promtool(case: Case, tmp_path: Path) -> None:
    assert set(case.expected) == set(BUILTIN_QUERIES), "every builtin query needs an expectation in every case"
    rules_path, tests_path = write_files(case, tmp_path)
    checked = run_promtool("check", "rules", rules_path.name, cwd=tmp_path)
    assert checked.returncode == 0, f"promtool check rules failed:\n{checked.stdout}\n{checked.stderr}"
    result = run_promtool("test", "rules", tests_path.name, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "SUCCESS" in output, (
        f"{case.name}: promtool test rules failed (files in {tmp_path}):\n{output}\n"
        f"rules:\n{rules_path.read_text()}")


def test_the_cases_use_the_windows_the_operator_would() -> None:
    local = next(c for c in CASES if c.scrape_interval_s == 1)
    assert format_duration(local.window_s()) == "15s"  # the analysis interval
    assert [format_duration(c.window_s()) for c in CASES if c.scrape_interval_s == 30] == ["2m", "30s"]
    assert '}[2m]' in CASES[-2].queries(120)["request-success-rate"].text


def test_a_window_under_four_scrapes_is_refused_before_any_query() -> None:
    with pytest.raises(SpecError, match="fewer than 4 scrapes"):
        spec("15s", [{"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "30s"}],
             scrape_interval_s=30)


def test_promtool_reports_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness itself: a case expecting the wrong number must fail, with promtool's words."""
    wrong = Case("healthy, expected wrongly", (Traffic(CANDIDATE, KNOWN),),
                 with_quantiles(KNOWN_QUANTILES, request_success_rate=0.5, request_count=1500.0))
    with pytest.raises(AssertionError, match=r"promtool test rules failed(.|\n)*request_success_rate"):
        test_builtin_queries_under_promtool(wrong, tmp_path)
