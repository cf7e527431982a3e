"""PromQL for analysis: the builtin templates and the variable renderer.

Rendering is a pure function over validated values: every variable must be a DNS name or a PromQL
duration before it is substituted, so no object name can smuggle PromQL into a query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..api import format_duration

VARIABLES = ("namespace", "target", "stable", "candidate", "interval")

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PROMQL_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

# The Seldon Core v1 executor's request histogram; the local data plane exports the same names.
REQUEST_METRIC = "seldon_api_executor_server_requests_seconds"
# Predictions only: feedback requests go through the executor too, but never fail and answer fast, so
# counting them would dilute the candidate's error rate and latency.
_CANDIDATE = ('namespace="{{namespace}}",deployment_name="{{target}}",predictor_name="{{candidate}}",'
              'service="predictions"')
_COUNT = REQUEST_METRIC + "_count{" + _CANDIDATE + "}[{{interval}}]"
_ERROR_COUNT = REQUEST_METRIC + "_count{" + _CANDIDATE + ',code=~"5.."}[{{interval}}]'
_BUCKETS = REQUEST_METRIC + "_bucket{" + _CANDIDATE + "}[{{interval}}]"


def _quantile(q: str) -> str:
    # No candidate series: empty; counters flat over the window: every bucket rate is 0 and the quantile NaN.
    # Both are no data, never a pass.
    return f"histogram_quantile({q}, sum by (le) (rate({_BUCKETS})))"


# Candidate requests in the window: the request-count template and the minRequests gate. Empty when the
# candidate has no series at all (the gate counts that as 0; the template is then inconclusive).
REQUEST_COUNT_QUERY = f"sum(increase({_COUNT}))"

# One minus the share of candidate requests that ended in a 5xx. The error count is 0 (`or vector(0)`)
# when no request failed, because then there is no 5xx series to select; the division by all requests
# keeps the result empty when the candidate has no series at all and NaN when its counters are flat, so
# only-2xx gives 1, only-5xx gives 0 (a failure), and no requests give no data, never a pass.
SUCCESS_RATE_QUERY = f"1 - ((sum(rate({_ERROR_COUNT})) or vector(0)) / sum(rate({_COUNT})))"

# What each builtin answers for each traffic shape is checked by Prometheus's own engine: see
# tests/unit/test_promql_rules.py (promtool test rules).
BUILTIN_QUERIES: dict[str, str] = {
    "request-success-rate": SUCCESS_RATE_QUERY,
    "request-duration-p50": _quantile("0.5"),
    "request-duration-p90": _quantile("0.9"),
    "request-duration-p99": _quantile("0.99"),
    "request-count": REQUEST_COUNT_QUERY,
}


class QueryError(ValueError):
    """A query that cannot be rendered: an unknown variable or a value that is not a safe name."""


@dataclass(frozen=True)
class QueryVariables:
    """The values a query may use; validated on construction."""

    namespace: str
    target: str
    stable: str
    candidate: str
    interval: str

    def __post_init__(self) -> None:
        _check(self.namespace, _DNS_LABEL, "namespace", "a DNS label")
        _check(self.target, _DNS_SUBDOMAIN, "target", "a DNS subdomain name")
        _check(self.stable, _DNS_LABEL, "stable", "a DNS label")
        _check(self.candidate, _DNS_LABEL, "candidate", "a DNS label")
        _check(self.interval, _PROMQL_DURATION, "interval", "a PromQL duration such as 30s or 1m30s")

    @classmethod
    def for_window(cls, namespace: str, target: str, stable: str, candidate: str,
                   window_s: float) -> QueryVariables:
        return cls(namespace=namespace, target=target, stable=stable, candidate=candidate,
                   interval=format_duration(window_s))

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in VARIABLES}


def _check(value: str, pattern: re.Pattern[str], name: str, what: str) -> None:
    limit = 253 if pattern is _DNS_SUBDOMAIN else 63
    if not isinstance(value, str) or len(value) > limit or not pattern.fullmatch(value):
        raise QueryError(f"{{{{{name}}}}} value {value!r} is not {what}; refusing to put it into PromQL")


def template_variables(template: str) -> tuple[str, ...]:
    """The variable names a template uses, in order of first use."""
    return tuple(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template)))


def render_query(template: str, variables: QueryVariables) -> str:
    """Substitute {{namespace}}, {{target}}, {{stable}}, {{candidate}} and {{interval}}."""
    unknown = [name for name in template_variables(template) if name not in VARIABLES]
    if unknown:
        known = ", ".join(f"{{{{{v}}}}}" for v in VARIABLES)
        raise QueryError(f"unknown variable {{{{{unknown[0]}}}}} in query; the known variables are {known}")
    values = variables.as_dict()
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
