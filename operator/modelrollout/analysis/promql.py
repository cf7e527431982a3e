"""PromQL for analysis: the builtin templates and the variable renderer.

Rendering is a pure function over validated values: every variable must be a DNS name, a PromQL
duration or a plain version name before it is substituted, so no object name or version can smuggle PromQL
into a query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..api import format_duration

VARIABLES = ("namespace", "target", "stable", "candidate", "interval", "candidateVersion", "stableVersion",
             "namespaceLabel")

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PROMQL_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
# A model version, as spec.candidate.version allows it (the CRD's pattern) and as the model server labels
# feedback outcomes with it (served_model_version): letters, digits, '.', '_', '-', at most 63 characters.
_VERSION = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_VERSION_WHAT = "a version name ([A-Za-z0-9._-], starting and ending alphanumeric, at most 63 characters)"

# The Seldon Core v1 executor's request histogram; the local data plane exports the same names.
REQUEST_METRIC = "seldon_api_executor_server_requests_seconds"
# Predictions only: feedback requests go through the executor too, but never fail and answer fast, so
# counting them would dilute the candidate's error rate and latency. The executor's `service` label is
# "predictions" for REST and the full gRPC method for gRPC (Seldon's protocol and the v2 protocol).
PREDICTION_SERVICES = "predictions|/seldon.protos.Seldon/Predict|/inference.GRPCInferenceService/ModelInfer"
# The executor exports no namespace label: the scrape adds it, named `namespace` (a Prometheus Operator
# PodMonitor) or `kubernetes_namespace` (Seldon's analytics chart): {{namespaceLabel}}, an operator setting.
_CANDIDATE = ('{{namespaceLabel}}="{{namespace}}",deployment_name="{{target}}",predictor_name="{{candidate}}",'
              f'service=~"{PREDICTION_SERVICES}"')
# Server-side failures: HTTP 5xx (REST) and the gRPC codes a server answers when it failed (not the
# caller's mistakes such as InvalidArgument, as 4xx do not count for REST).
ERROR_CODES = "5..|Unknown|DeadlineExceeded|Internal|Unavailable|DataLoss|Unimplemented"
_COUNT = REQUEST_METRIC + "_count{" + _CANDIDATE + "}[{{interval}}]"
_ERROR_COUNT = REQUEST_METRIC + "_count{" + _CANDIDATE + f',code=~"{ERROR_CODES}"' + "}[{{interval}}]"
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

# Requests that never reached the candidate's executor: the mesh answered 503 because the predictor had no
# ready (or reachable) pod. Istio's ingress gateway reports them (reporter="source") against the
# predictor's Service, `<deployment>-<predictor>` (the candidate has no seldon.io/svc-name). Optional: the
# cluster must run Istio and Prometheus must scrape its gateway.
_MESH_FAILED = ('istio_requests_total{reporter="source",destination_service_namespace="{{namespace}}",'
                'destination_service_name="{{target}}-{{candidate}}",response_code="503"}[{{interval}}]')
SUCCESS_RATE_WITH_MESH_QUERY = (
    f"1 - (((sum(rate({_ERROR_COUNT})) or vector(0)) + (sum(rate({_MESH_FAILED})) or vector(0)))"
    f" / ((sum(rate({_COUNT})) or vector(0)) + (sum(rate({_MESH_FAILED})) or vector(0))))")

# What each builtin answers for each traffic shape is checked by Prometheus's own engine: see
# tests/unit/test_promql_rules.py (promtool test rules).
BUILTIN_QUERIES: dict[str, str] = {
    "request-success-rate": SUCCESS_RATE_QUERY,
    "request-success-rate-with-mesh": SUCCESS_RATE_WITH_MESH_QUERY,
    "request-duration-p50": _quantile("0.5"),
    "request-duration-p90": _quantile("0.9"),
    "request-duration-p99": _quantile("0.99"),
    "request-count": REQUEST_COUNT_QUERY,
}


class QueryError(ValueError):
    """A query that cannot be rendered: an unknown variable or a value that is not a safe name."""


@dataclass(frozen=True)
class QueryVariables:
    """The values a query may use. Names and the window are validated on construction. The versions are
    validated when a query uses them, so that a query that does not is never refused because of them; an
    empty version is unknown, and a query that uses it is refused."""

    namespace: str
    target: str
    stable: str
    candidate: str
    interval: str
    candidate_version: str = ""
    stable_version: str = ""
    namespace_label: str = "namespace"

    def __post_init__(self) -> None:
        _check(self.namespace, _DNS_LABEL, "namespace", "a DNS label")
        _check(self.namespace_label, _LABEL_NAME, "namespaceLabel", "a Prometheus label name")
        _check(self.target, _DNS_SUBDOMAIN, "target", "a DNS subdomain name")
        _check(self.stable, _DNS_LABEL, "stable", "a DNS label")
        _check(self.candidate, _DNS_LABEL, "candidate", "a DNS label")
        _check(self.interval, _PROMQL_DURATION, "interval", "a PromQL duration such as 30s or 1m30s")
        for name in ("candidate_version", "stable_version"):
            if not isinstance(getattr(self, name), str):
                raise QueryError(f"{name} must be a string")

    @classmethod
    def for_window(cls, namespace: str, target: str, stable: str, candidate: str, window_s: float,
                   candidate_version: str = "", stable_version: str = "",
                   namespace_label: str = "namespace") -> QueryVariables:
        return cls(namespace=namespace, target=target, stable=stable, candidate=candidate,
                   interval=format_duration(window_s), candidate_version=candidate_version,
                   stable_version=stable_version, namespace_label=namespace_label)

    def as_dict(self) -> dict[str, str]:
        """Every variable by its template name; the versions unchecked (render_query checks what it uses)."""
        return {"namespace": self.namespace, "target": self.target, "stable": self.stable,
                "candidate": self.candidate, "interval": self.interval,
                "candidateVersion": self.candidate_version, "stableVersion": self.stable_version,
                "namespaceLabel": self.namespace_label}

    def value(self, name: str) -> str:
        """The value of the template variable ``name``, validated: a QueryError names what is wrong."""
        value = self.as_dict()[name]
        if name in _VERSIONS:
            if value == "":
                raise QueryError(f"{_VERSIONS[name]} version unknown: the query uses {{{{{name}}}}} but there is "
                                 f"no {_VERSIONS[name]} version to put there")
            _check(value, _VERSION, name, _VERSION_WHAT)
        return value


# The version variables, and whose version each is (for messages).
_VERSIONS = {"candidateVersion": "candidate", "stableVersion": "stable"}


def _check(value: str, pattern: re.Pattern[str], name: str, what: str) -> None:
    limit = 253 if pattern is _DNS_SUBDOMAIN else 63
    if not isinstance(value, str) or len(value) > limit or not pattern.fullmatch(value):
        raise QueryError(f"{{{{{name}}}}} value {value!r} is not {what}; refusing to put it into PromQL")


def template_variables(template: str) -> tuple[str, ...]:
    """The variable names a template uses, in order of first use."""
    return tuple(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template)))


def render_query(template: str, variables: QueryVariables) -> str:
    """Substitute {{namespace}}, {{target}}, {{stable}}, {{candidate}}, {{interval}}, {{candidateVersion}}
    and {{stableVersion}}. Every variable the template uses is validated first: nothing is substituted
    unless all of them are safe."""
    used = template_variables(template)
    unknown = [name for name in used if name not in VARIABLES]
    if unknown:
        known = ", ".join(f"{{{{{v}}}}}" for v in VARIABLES)
        raise QueryError(f"unknown variable {{{{{unknown[0]}}}}} in query; the known variables are {known}")
    values = {name: variables.value(name) for name in used}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
