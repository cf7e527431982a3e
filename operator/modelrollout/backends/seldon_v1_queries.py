"""The builtin metric templates for Seldon Core v1, over what its executor and Istio export.

Queries are PromQL with {{variables}} (``analysis.promql.VARIABLES``), rendered per check. What each one
answers for each traffic shape is checked by Prometheus's own engine: tests/unit/test_promql_rules.py
(promtool test rules).
"""

from __future__ import annotations

from ..templates import DistributionQuery, MetricTemplate, ProportionQueries
from ..traffic import TargetKind

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

# Comparisons count over the window (increase), candidate and stable alike.
# Successes: requests that did not end in a server-side failure. `or vector(0)` when none did (no series);
# the trials query is empty when the predictor has no series at all: no data, never a pass.
SUCCESS_COUNT_QUERY = ("sum(increase(" + REQUEST_METRIC + "_count{" + _CANDIDATE + f',code!~"{ERROR_CODES}"'
                       + "}[{{interval}}])) or vector(0)")
# Latency buckets, cumulative by le, for a rank test of the two sides.
BUCKETS_QUERY = f"sum by (le) (increase({_BUCKETS}))"

# Model quality, from the model server's own counters (exported through seldon-core's custom metrics, so
# they carry deployment_name and predictor_name; the scrape adds the namespace). Feedback is routed like
# predictions, by weight, so it is counted by the model version that produced the judged answer
# (served_model_version), wherever it landed; predictions_total counts answers as served, by class.
_FEEDBACK = ('feedback_outcomes_total{{{namespaceLabel}}="{{namespace}}",deployment_name="{{target}}",'
             'served_model_version="{{candidateVersion}}"')
ACCURACY_QUERY = (f'(sum(rate({_FEEDBACK},outcome="correct"}}[{{{{interval}}}}])) or vector(0))'
                  f" / sum(rate({_FEEDBACK}}}[{{{{interval}}}}]))")
CORRECT_COUNT_QUERY = f'sum(increase({_FEEDBACK},outcome="correct"}}[{{{{interval}}}}])) or vector(0)'
FEEDBACK_COUNT_QUERY = f"sum(increase({_FEEDBACK}}}[{{{{interval}}}}]))"
CLASS_COUNTS_QUERY = ('sum by (class) (increase(predictions_total{{{namespaceLabel}}="{{namespace}}",'
                      'deployment_name="{{target}}",served_model_version="{{candidateVersion}}"}[{{interval}}]))')

# The worst class's recall: per true class, the share of feedback on the candidate's answers that was
# correct; the lowest of them. A class with feedback but no correct answer has no "correct" series: the
# `or 0 * ...` arm gives it 0 (a model blind to that class fails). No feedback at all: empty, no data.
_CLASS_FEEDBACK = ('feedback_class_outcomes_total{{{namespaceLabel}}="{{namespace}}",deployment_name="{{target}}",'
                   'served_model_version="{{candidateVersion}}"')
_PER_CLASS = f"sum by (true_class) (rate({_CLASS_FEEDBACK}}}[{{{{interval}}}}]))"
CLASS_RECALL_QUERY = (f'min((sum by (true_class) (rate({_CLASS_FEEDBACK},outcome="correct"}}[{{{{interval}}}}]))'
                      f" or 0 * {_PER_CLASS}) / {_PER_CLASS})")

# A shadow's answers against the live ones to the same requests: the local data plane's comparing mirror
# counts prediction rows by outcome (agree, disagree). Istio's mirror discards the shadow's answer, so on a
# real mesh this series does not exist and the check is inconclusive (never a pass): use the
# prediction-distribution drift there.
_MIRROR = ('dataplane_mirror_answers_total{{{namespaceLabel}}="{{namespace}}",deployment_name="{{target}}",'
           'predictor_name="{{candidate}}"')
AGREEMENT_QUERY = (f'(sum(rate({_MIRROR},outcome="agree"}}[{{{{interval}}}}])) or vector(0))'
                   f" / sum(rate({_MIRROR}}}[{{{{interval}}}}]))")
AGREE_COUNT_QUERY = f'sum(increase({_MIRROR},outcome="agree"}}[{{{{interval}}}}])) or vector(0)'
COMPARED_COUNT_QUERY = f"sum(increase({_MIRROR}}}[{{{{interval}}}}]))"

BUILTIN_QUERIES: dict[str, str] = {
    "request-success-rate": SUCCESS_RATE_QUERY,
    "request-success-rate-with-mesh": SUCCESS_RATE_WITH_MESH_QUERY,
    "request-duration-p50": _quantile("0.5"),
    "request-duration-p90": _quantile("0.9"),
    "request-duration-p99": _quantile("0.99"),
    "request-count": REQUEST_COUNT_QUERY,
}

_REQUESTS = ProportionQueries(successes=SUCCESS_COUNT_QUERY, trials=REQUEST_COUNT_QUERY)

BUILTIN_TEMPLATES: dict[str, MetricTemplate] = {
    "request-success-rate": MetricTemplate(value=SUCCESS_RATE_QUERY, proportion=_REQUESTS,
                                           description="share of the candidate's predictions that did not fail"),
    "request-success-rate-with-mesh": MetricTemplate(
        value=SUCCESS_RATE_WITH_MESH_QUERY, description="success rate counting the mesh's 503s as failures"),
    **{f"request-duration-p{q}": MetricTemplate(
        value=BUILTIN_QUERIES[f"request-duration-p{q}"],
        histogram=DistributionQuery(counts=BUCKETS_QUERY, by="le", quantile=int(q) / 100),
        description=f"p{q} latency of the candidate's predictions (s)") for q in ("50", "90", "99")},
    "request-count": MetricTemplate(value=REQUEST_COUNT_QUERY, description="the candidate's predictions"),
    "model-accuracy": MetricTemplate(
        value=ACCURACY_QUERY, proportion=ProportionQueries(successes=CORRECT_COUNT_QUERY, trials=FEEDBACK_COUNT_QUERY),
        description="share of the candidate model's answers that ground-truth feedback confirmed"),
    "class-recall": MetricTemplate(
        value=CLASS_RECALL_QUERY,
        description="the lowest recall over the true classes in the candidate's feedback (a floor: min)"),
    "shadow-agreement": MetricTemplate(
        value=AGREEMENT_QUERY,
        proportion=ProportionQueries(successes=AGREE_COUNT_QUERY, trials=COMPARED_COUNT_QUERY), shadow_only=True,
        description="share of a shadow's predictions that name the class the live model answered (min; needs a "
                    "data plane that compares mirrored answers)"),
    "prediction-distribution": MetricTemplate(
        distribution=DistributionQuery(counts=CLASS_COUNTS_QUERY, by="class"),
        description="the candidate model's answers by predicted class (drift against the stable's)"),
}


SELDON_V1 = TargetKind(
    kind="SeldonDeployment",
    # v1 is the storage version and what the backend reads and writes (the CRD's schema allows only it).
    api_versions=("machinelearning.seldon.io/v1",),
    builtin_templates=BUILTIN_TEMPLATES,
    request_count_query=REQUEST_COUNT_QUERY,
)
