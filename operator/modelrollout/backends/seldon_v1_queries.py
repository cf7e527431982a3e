"""The builtin metric templates for Seldon Core v1, over what its executor and Istio export.

Queries are PromQL with {{variables}} (``analysis.promql.VARIABLES``), rendered per check. What each one
answers for each traffic shape is checked by Prometheus's own engine: tests/unit/test_promql_rules.py
(promtool test rules).
"""

from __future__ import annotations

from dataclasses import replace

from ..templates import DistributionQuery, Grouping, MetricTemplate, ProportionQueries
from ..traffic import TargetKind

# The Seldon Core v1 executor's request histogram; the local data plane exports the same names.
REQUEST_METRIC = "seldon_api_executor_server_requests_seconds"
# Predictions only: feedback requests go through the executor too, but never fail and answer fast, so
# counting them would dilute the candidate's error rate and latency. The executor's `service` label is
# "predictions" for REST and the full gRPC method for gRPC (Seldon's protocol and the v2 protocol).
PREDICTION_SERVICES = "predictions|/seldon.protos.Seldon/Predict|/inference.GRPCInferenceService/ModelInfer"
# The executor exports no namespace label: the scrape adds it, named `namespace` (a Prometheus Operator
# PodMonitor) or `kubernetes_namespace` (Seldon's analytics chart): {{namespaceLabel}}, an operator setting.
_NAMESPACE = '{{namespaceLabel}}="{{namespace}}"'
# Server-side failures: HTTP 5xx (REST) and the gRPC codes a server answers when it failed (not the
# caller's mistakes such as InvalidArgument, as 4xx do not count for REST).
ERROR_CODES = "5..|Unknown|DeadlineExceeded|Internal|Unavailable|DataLoss|Unimplemented"

# What tells one rollout's series from another's, as (series label, query variable): a predictor, or a
# model version wherever its answers were served (feedback is routed by weight, like predictions).
BY_PREDICTOR = (("deployment_name", "target"), ("predictor_name", "candidate"))
BY_VERSION = (("deployment_name", "target"), ("served_model_version", "candidateVersion"))


class _Form:
    """Writes one query either for one rollout (``grouped`` False: matchers name its deployment and
    predictor or version; aggregations to one number) or for every rollout of a namespace at once
    (``grouped`` True: no such matchers; aggregations keep the identity labels, one series per rollout)."""

    def __init__(self, identity: tuple[tuple[str, str], ...], grouped: bool) -> None:
        self.grouped = grouped
        self._labels = tuple(label for label, _ in identity)
        self._one = "" if grouped else ",".join(f'{label}="{{{{{variable}}}}}"' for label, variable in identity)

    def select(self, metric: str, *matchers: str) -> str:
        """``metric`` over the window, in the namespace (and for one rollout, its series only)."""
        return metric + "{" + ",".join(m for m in (_NAMESPACE, self._one, *matchers) if m) + "}[{{interval}}]"

    def agg(self, op: str, expr: str, *by: str) -> str:
        labels = (*by, *self._labels) if self.grouped else by
        return f"{op} by ({', '.join(labels)}) ({expr})" if labels else f"{op}({expr})"

    def sum(self, expr: str, *by: str) -> str:
        return self.agg("sum", expr, *by)


def _or_zero(counted: str, every: str) -> str:
    """``counted``, or 0 where it has no series but ``every`` has: a count of failures (or of correct
    answers) is 0, not missing, when none happened. Where ``every`` is missing too the answer stays empty:
    no data, never a pass."""
    return f"{counted} or 0 * {every}"


_PREDICTIONS = f'service=~"{PREDICTION_SERVICES}"'
_FAILED = f'code=~"{ERROR_CODES}"'
_NOT_FAILED = f'code!~"{ERROR_CODES}"'


def _requests(form: _Form) -> dict[str, str]:
    """The request templates' queries, over the executor's histogram."""
    every = form.select(REQUEST_METRIC + "_count", _PREDICTIONS)
    failed = form.select(REQUEST_METRIC + "_count", _PREDICTIONS, _FAILED)
    not_failed = form.select(REQUEST_METRIC + "_count", _PREDICTIONS, _NOT_FAILED)
    buckets = form.select(REQUEST_METRIC + "_bucket", _PREDICTIONS)
    every_rate, every_count = form.sum(f"rate({every})"), form.sum(f"increase({every})")
    bucket_rates = form.sum(f"rate({buckets})", "le")
    return {
        # Candidate requests in the window: the request-count template and the minRequests gate. Empty when
        # the candidate has no series at all (the gate counts that as 0; the template is then inconclusive).
        "count": every_count,
        # One minus the share of requests that ended in a server-side failure: only-2xx gives 1, only-5xx
        # 0 (a failure); no series is no data and flat counters NaN (no data): never a pass without requests.
        "success_rate": f"1 - (({_or_zero(form.sum(f'rate({failed})'), every_rate)}) / {every_rate})",
        # Comparisons count over the window (increase), candidate and stable alike.
        "successes": _or_zero(form.sum(f"increase({not_failed})"), every_count),
        # Latency buckets, cumulative by le, for a rank test of the two sides.
        "buckets": form.sum(f"increase({buckets})", "le"),
        # No series: empty; flat counters: every bucket rate 0 and the quantile NaN. Both no data.
        **{f"p{q}": f"histogram_quantile({int(q) / 100:g}, {bucket_rates})" for q in ("50", "90", "99")},
    }


def _proportion(metric: str, good: str, form: _Form) -> ProportionQueries:
    """Outcomes counted by one counter with an ``outcome`` label: ``good`` ones out of all."""
    every_count = form.sum(f"increase({form.select(metric)})")
    return ProportionQueries(successes=_or_zero(form.sum(f"increase({form.select(metric, good)})"), every_count),
                             trials=every_count)


def _share(metric: str, good: str, form: _Form) -> str:
    """The rate of ``good`` outcomes among all of ``metric``'s."""
    every_rate = form.sum(f"rate({form.select(metric)})")
    return f"({_or_zero(form.sum(f'rate({form.select(metric, good)})'), every_rate)}) / {every_rate}"


def _class_recall(form: _Form) -> str:
    # The worst class's recall: per true class, the share of feedback on the candidate's answers that was
    # correct; the lowest of them. A class with feedback but no correct answer has no "correct" series: the
    # `or 0 * ...` arm gives it 0 (a model blind to that class fails). No feedback at all: empty, no data.
    metric = "feedback_class_outcomes_total"
    per_class = form.sum(f"rate({form.select(metric)})", "true_class")
    correct = form.sum(f"rate({form.select(metric, 'outcome=' + chr(34) + 'correct' + chr(34))})", "true_class")
    return form.agg("min", f"({_or_zero(correct, per_class)}) / {per_class}")


# Which rollout a series belongs to: its predictor for requests and the mirror; its model version for the
# model server's quality counters (feedback is counted by the version that produced the judged answer,
# wherever it was routed; predictions_total counts answers as served, by class).
_IDENTITY = {"model-accuracy": BY_VERSION, "class-recall": BY_VERSION, "prediction-distribution": BY_VERSION}


def _templates(grouped: bool) -> dict[str, MetricTemplate]:
    """The groupable builtin templates, for one rollout or (``grouped``) for every rollout of a namespace."""
    by_predictor, by_version = _Form(BY_PREDICTOR, grouped), _Form(BY_VERSION, grouped)
    requests = _requests(by_predictor)
    feedback, correct = "feedback_outcomes_total", 'outcome="correct"'
    # A shadow's answers against the live ones to the same requests: the local data plane's comparing
    # mirror counts prediction rows by outcome (agree, disagree). Istio's mirror discards the shadow's
    # answer, so on a real mesh this series does not exist and the check is inconclusive (never a pass):
    # use the prediction-distribution drift there.
    mirror, agree = "dataplane_mirror_answers_total", 'outcome="agree"'
    return {
        "request-success-rate": MetricTemplate(
            value=requests["success_rate"],
            proportion=ProportionQueries(successes=requests["successes"], trials=requests["count"]),
            description="share of the candidate's predictions that did not fail"),
        **{f"request-duration-p{q}": MetricTemplate(
            value=requests[f"p{q}"],
            histogram=DistributionQuery(counts=requests["buckets"], by="le", quantile=int(q) / 100),
            description=f"p{q} latency of the candidate's predictions (s)") for q in ("50", "90", "99")},
        "request-count": MetricTemplate(value=requests["count"], description="the candidate's predictions"),
        "model-accuracy": MetricTemplate(
            value=_share(feedback, correct, by_version), proportion=_proportion(feedback, correct, by_version),
            description="share of the candidate model's answers that ground-truth feedback confirmed"),
        "class-recall": MetricTemplate(
            value=_class_recall(by_version),
            description="the lowest recall over the true classes in the candidate's feedback (a floor: min)"),
        "shadow-agreement": MetricTemplate(
            value=_share(mirror, agree, by_predictor), proportion=_proportion(mirror, agree, by_predictor),
            shadow_only=True,
            description="share of a shadow's predictions that name the class the live model answered (min; needs "
                        "a data plane that compares mirrored answers)"),
        "prediction-distribution": MetricTemplate(
            distribution=DistributionQuery(
                counts=by_version.sum(f"increase({by_version.select('predictions_total')})", "class"), by="class"),
            description="the candidate model's answers by predicted class (drift against the stable's)"),
    }


def _grouped_templates() -> dict[str, MetricTemplate]:
    alone, grouped = _templates(grouped=False), _templates(grouped=True)
    return {name: replace(template, grouped=Grouping(template=grouped[name],
                                                     labels=_IDENTITY.get(name, BY_PREDICTOR)))
            for name, template in alone.items()}


# Requests that never reached the candidate's executor: the mesh answered 503 because the predictor had no
# ready (or reachable) pod. Istio's ingress gateway reports them (reporter="source") against the
# predictor's Service, `<deployment>-<predictor>` (the candidate has no seldon.io/svc-name). Optional: the
# cluster must run Istio and Prometheus must scrape its gateway. Asked per rollout: these series name the
# predictor only inside the Service's name, so they cannot be grouped with the executor's.
_ONE = _Form(BY_PREDICTOR, grouped=False)
_ERRORS = _ONE.sum(f"rate({_ONE.select(REQUEST_METRIC + '_count', _PREDICTIONS, _FAILED)})")
_REQUESTS = _ONE.sum(f"rate({_ONE.select(REQUEST_METRIC + '_count', _PREDICTIONS)})")
_MESH_FAILED = ('sum(rate(istio_requests_total{reporter="source",destination_service_namespace="{{namespace}}",'
                'destination_service_name="{{target}}-{{candidate}}",response_code="503"}[{{interval}}]))')
SUCCESS_RATE_WITH_MESH_QUERY = (f"1 - ((({_ERRORS} or vector(0)) + ({_MESH_FAILED} or vector(0)))"
                                f" / (({_REQUESTS} or vector(0)) + ({_MESH_FAILED} or vector(0))))")

_GROUPABLE = _grouped_templates()
BUILTIN_TEMPLATES: dict[str, MetricTemplate] = {
    "request-success-rate": _GROUPABLE["request-success-rate"],
    "request-success-rate-with-mesh": MetricTemplate(
        value=SUCCESS_RATE_WITH_MESH_QUERY, description="success rate counting the mesh's 503s as failures"),
    **{name: template for name, template in _GROUPABLE.items() if name != "request-success-rate"},
}

# The request templates' value queries (what tests/unit/test_promql_rules.py evaluates), by template name.
BUILTIN_QUERIES: dict[str, str] = {
    name: BUILTIN_TEMPLATES[name].value for name in (
        "request-success-rate", "request-success-rate-with-mesh", "request-duration-p50", "request-duration-p90",
        "request-duration-p99", "request-count")}
REQUEST_COUNT = BUILTIN_TEMPLATES["request-count"]
REQUEST_COUNT_QUERY = REQUEST_COUNT.value


SELDON_V1 = TargetKind(
    kind="SeldonDeployment",
    # v1 is the storage version and what the backend reads and writes (the CRD's schema allows only it).
    api_versions=("machinelearning.seldon.io/v1",),
    builtin_templates=BUILTIN_TEMPLATES,
    request_count=REQUEST_COUNT,
)
