"""What the local data plane should run and where requests go, computed from SeldonDeployments (pure).

It stands in for three Seldon/Istio parts, each following the upstream behaviour it names:

- Seldon's controller (operator/controllers/seldondeployment_controller.go, seldondeployment_engine.go):
  one Deployment per predictor whose pod template holds the predictor spec without ``traffic`` and
  ``replicas`` (the executor's ENGINE_PREDICTOR) and the deployment's ``spec.annotations``, so any other
  change to a predictor (annotations, componentSpecs, graph) rolls its pods; one Service per predictor
  named ``<deployment>-<predictor>`` (or ``seldon.io/svc-name``); ``progressDeadlineSeconds`` per predictor.
- Istio's VirtualService that controller writes (``createIstioResources``): one weighted destination per
  non-shadow predictor, no header match (predictions and feedback share the route, so both go by weight),
  and one mirror: the last shadow predictor, at its ``traffic`` percent when above 0, else all requests.
- The executor's request histogram (executor/api/metric, executor/api/rest/server.go ``wrapMetrics``) and
  Istio's ``istio_requests_total`` as the ingress gateway reports it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

MODEL_MOUNT = "/models"  # where a cluster's storage initializer would put file:///models/... artifacts
VERSION_ANNOTATION = "version"  # the predictor annotation the executor reports as predictor_version
SVC_NAME_ANNOTATION = "seldon.io/svc-name"  # Seldon's override of a predictor's Service name
DEFAULT_PROGRESS_DEADLINE_S = 600.0  # a Deployment's spec.progressDeadlineSeconds when the predictor sets none
MAX_NAME = 63  # Kubernetes names; Seldon hashes longer generated names


# --------------------------------------------------------------------------------------------------
# The controller: what runs


@dataclass(frozen=True)
class ServerSpec:
    """One model-server process the data plane must run: one replica (pod) of a predictor's Deployment."""

    namespace: str
    deployment: str
    predictor: str
    replica: int
    model_uri: str  # as written in the graph
    model_path: str  # where it is on this machine
    env: tuple[tuple[str, str], ...] = ()
    template: str = ""  # the pod template's hash: a new one replaces the pod (a rolling update)
    predictor_version: str = ""  # the predictor's `version` annotation, as the pod's executor reports it

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.namespace, self.deployment, self.predictor, self.replica)


class ModelUriError(ValueError):
    pass


def _graph_nodes(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in node.get("children") or ():
        yield from _graph_nodes(child)


def model_uri_of(predictor: Mapping[str, Any]) -> str:
    for node in _graph_nodes(predictor.get("graph") or {}):
        if node.get("modelUri"):
            return str(node["modelUri"])
    return ""


def local_model_path(model_uri: str, models_dir: Path) -> str:
    """file:///models/digits/2.0.0 → <models_dir>/digits/2.0.0 (the volume a storage initializer fills)."""
    parsed = urlparse(model_uri)
    if parsed.scheme != "file":
        raise ModelUriError(f"modelUri {model_uri!r}: the local data plane serves file:// models only")
    path = parsed.path
    if path == MODEL_MOUNT or path.startswith(MODEL_MOUNT + "/"):
        return str(models_dir / path[len(MODEL_MOUNT):].lstrip("/"))
    return path


def _container_env(predictor: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Environment of the model container from componentSpecs, as Seldon would set it."""
    env: list[tuple[str, str]] = []
    for spec in predictor.get("componentSpecs") or ():
        for container in (spec.get("spec") or {}).get("containers") or ():
            for item in container.get("env") or ():
                if "name" in item and "value" in item:
                    env.append((str(item["name"]), str(item["value"])))
    return tuple(env)


def _short_hash(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def pod_template_hash(sdep: Mapping[str, Any], predictor: Mapping[str, Any]) -> str:
    """What a predictor's pods are made from; when it changes, Seldon's controller updates the Deployment and
    its pods roll. The executor container carries the predictor spec with traffic and replicas zeroed (so a
    weight or a scale change never rolls the pods), and the deployment's spec.annotations go on every pod."""
    spec = sdep.get("spec") or {}
    template = {
        "predictor": {k: v for k, v in predictor.items() if k not in ("traffic", "replicas")},
        "annotations": spec.get("annotations") or {},
    }
    return hashlib.sha256(json.dumps(template, sort_keys=True, default=str).encode()).hexdigest()[:10]


def predictor_version(predictor: Mapping[str, Any]) -> str:
    """The executor's predictor_version label: the predictor's `version` annotation, "" when unset."""
    return str((predictor.get("annotations") or {}).get(VERSION_ANNOTATION) or "")


def desired_replicas(predictor: Mapping[str, Any]) -> int:
    replicas = predictor.get("replicas")
    return 1 if replicas is None else max(0, int(replicas))


def progress_deadline_s(predictor: Mapping[str, Any], default: float = DEFAULT_PROGRESS_DEADLINE_S) -> float:
    """The predictor's progressDeadlineSeconds (Seldon passes it to the predictor's Deployment)."""
    value = predictor.get("progressDeadlineSeconds")
    return default if value is None else float(value)


def _bounded(name: str) -> str:
    return name if len(name) <= MAX_NAME else "seldon-" + _short_hash(name)


def service_name(deployment: str, predictor: Mapping[str, Any]) -> str:
    """The predictor's Service, the VirtualService's destination host (its subset is the predictor)."""
    custom = (predictor.get("annotations") or {}).get(SVC_NAME_ANNOTATION)
    return str(custom) if custom else _bounded(f"{deployment}-{predictor.get('name')}")


def workload_name(deployment: str, predictor: Mapping[str, Any]) -> str:
    """The name of the predictor's (first) Deployment: <deployment>-<predictor>-0-<containers>."""
    components = predictor.get("componentSpecs") or [{}]
    first = components[0] or {}
    named = (first.get("metadata") or {}).get("name")
    containers = [str(c.get("name")) for c in (first.get("spec") or {}).get("containers") or () if c.get("name")]
    suffix = named or "-".join(containers) or str((predictor.get("graph") or {}).get("name") or "")
    return _bounded(f"{deployment}-{predictor.get('name')}-0-{suffix}")


def servers_for(sdep: Mapping[str, Any], models_dir: Path) -> tuple[list[ServerSpec], list[str]]:
    """The processes a SeldonDeployment needs, and the problems that keep some from running."""
    meta = sdep.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
    servers: list[ServerSpec] = []
    problems: list[str] = []
    for predictor in (sdep.get("spec") or {}).get("predictors") or ():
        uri = model_uri_of(predictor)
        if not uri:
            problems.append(f"predictor {predictor.get('name')!r} has no modelUri")
            continue
        try:
            path = local_model_path(uri, models_dir)
        except ModelUriError as exc:
            problems.append(str(exc))
            continue
        template, version = pod_template_hash(sdep, predictor), predictor_version(predictor)
        for replica in range(desired_replicas(predictor)):
            servers.append(ServerSpec(namespace, name, str(predictor["name"]), replica, uri, path,
                                      _container_env(predictor), template, version))
    return servers, problems


# --------------------------------------------------------------------------------------------------
# Istio's VirtualService: where requests go


@dataclass(frozen=True)
class PredictorRoute:
    name: str
    traffic: int
    shadow: bool
    service: str = ""  # the predictor's Service (destination host)
    workload: str = ""  # its Deployment (what Istio reports as destination_workload)
    pod_version: str = ""  # the `version` label of its pods (the predictor's labels.version)


@dataclass(frozen=True)
class DeploymentRoute:
    namespace: str
    deployment: str
    predictors: tuple[PredictorRoute, ...]

    def predictor(self, name: str) -> PredictorRoute | None:
        return next((p for p in self.predictors if p.name == name), None)


@dataclass(frozen=True)
class Mirror:
    predictor: PredictorRoute
    percent: float


def route_for(sdep: Mapping[str, Any]) -> DeploymentRoute:
    meta = sdep.get("metadata") or {}
    name = str(meta.get("name", ""))
    predictors = tuple(
        PredictorRoute(str(p.get("name")), int(p.get("traffic") or 0), bool(p.get("shadow")), service_name(name, p),
                       workload_name(name, p), str((p.get("labels") or {}).get("version") or ""))
        for p in (sdep.get("spec") or {}).get("predictors") or ())
    return DeploymentRoute(str(meta.get("namespace", "default")), name, predictors)


def pick(route: DeploymentRoute, rng: random.Random | None = None) -> PredictorRoute | None:
    """The destination of one request (a prediction or feedback alike): by weight among the non-shadow
    predictors, whether or not they have a ready server (a destination without one fails at the mesh).

    A single destination takes every request whatever its weight (Istio's rule for one route destination);
    with several and every weight 0 (Seldon's webhook refuses that) they share equally.
    """
    live = [p for p in route.predictors if not p.shadow]
    if len(live) <= 1:
        return live[0] if live else None
    weights: Sequence[float] = [max(0, p.traffic) for p in live]
    if not any(weights):
        weights = [1.0] * len(live)
    return (rng or random).choices(live, weights=weights, k=1)[0]


def mirror_of(route: DeploymentRoute) -> Mirror | None:
    """The VirtualService's one mirror: the last shadow predictor (each one overwrites the previous), at its
    traffic as a percentage when above 0, else every request."""
    shadows = [p for p in route.predictors if p.shadow]
    if not shadows:
        return None
    last = shadows[-1]
    return Mirror(last, float(last.traffic) if last.traffic > 0 else 100.0)


# --------------------------------------------------------------------------------------------------
# The executor's request histogram


EXECUTOR_METRIC = "seldon_api_executor_server_requests_seconds"
EXECUTOR_HELP = "Requests answered by the executor of a predictor pod, by duration in seconds"
# The Prometheus client's default buckets, which the executor uses (executor/api/metric/constants.go).
EXECUTOR_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# No namespace: the executor does not know it; Prometheus adds it from the scraped pod (relabelling).
EXECUTOR_LABELS = ("deployment_name", "predictor_name", "predictor_version", "service", "method", "code")
EXECUTOR_METHOD = "post"  # promhttp's method label: the HTTP method, lower-case
EXECUTOR_CONTAINER = "seldon-container-engine"  # the executor's container in a predictor's pod


def executor_labels(spec: ServerSpec, service: str, code: int) -> tuple[str, ...]:
    """Label values (in EXECUTOR_LABELS order) of a request a predictor pod's executor answered."""
    return (spec.deployment, spec.predictor, spec.predictor_version, service, EXECUTOR_METHOD, str(code))


@dataclass
class Histogram:
    """One histogram series: observations per bucket (not cumulative), their count and sum."""

    bounds: tuple[float, ...] = EXECUTOR_BUCKETS
    per_bucket: list[float] = field(default_factory=list)
    count: float = 0.0
    sum: float = 0.0

    def __post_init__(self) -> None:
        if not self.per_bucket:
            self.per_bucket = [0.0] * len(self.bounds)

    def observe(self, seconds: float, times: float = 1.0) -> None:
        index = bisect_left(self.bounds, seconds)  # the first bucket whose upper bound (le) holds it
        if index < len(self.bounds):
            self.per_bucket[index] += times
        self.count += times
        self.sum += seconds * times

    def cumulative(self) -> list[float]:
        out, running = [], 0.0
        for n in self.per_bucket:
            running += n
            out.append(running)
        return out


def format_value(value: float) -> str:
    """A sample value or bound as the Go client writes it: 1 not 1.0, 0.005, +Inf."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}"


def render_histograms(name: str, help_text: str, label_names: Sequence[str],
                      series: Mapping[tuple[str, ...], Histogram], buckets: bool = True) -> str:
    """Prometheus text exposition of a histogram family ("" when it has no series, as the Go client omits it);
    without ``buckets``, only its _sum and _count series."""
    if not series:
        return ""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for values, histogram in sorted(series.items()):
        if buckets:
            for bound, count in zip(histogram.bounds, histogram.cumulative(), strict=True):
                le = f'le="{format_value(bound)}"'
                lines.append(f"{name}_bucket{format_labels(label_names, values, le)} {format_value(count)}")
            inf = format_labels(label_names, values, 'le="+Inf"')
            lines.append(f"{name}_bucket{inf} {format_value(histogram.count)}")
        lines.append(f"{name}_sum{format_labels(label_names, values)} {format_value(histogram.sum)}")
        lines.append(f"{name}_count{format_labels(label_names, values)} {format_value(histogram.count)}")
    return "\n".join(lines) + "\n"


def render_counters(name: str, help_text: str, label_names: Sequence[str],
                    series: Mapping[tuple[str, ...], float]) -> str:
    if not series:
        return ""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
    lines.extend(f"{name}{format_labels(label_names, values)} {format_value(value)}"
                 for values, value in sorted(series.items()))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Istio: istio_requests_total as the ingress gateway (reporter="source") reports it


MESH_METRIC = "istio_requests_total"
MESH_HELP = "Requests through the ingress gateway"
# Istio's standard labels of istio_requests_total, in its order.
MESH_LABELS = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_canonical_service", "source_canonical_revision", "source_cluster",
    "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
    "destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
    "destination_canonical_service", "destination_canonical_revision", "destination_cluster",
    "request_protocol", "response_flags", "connection_security_policy", "response_code", "grpc_response_status",
)
GATEWAY, GATEWAY_NAMESPACE = "istio-ingressgateway", "istio-system"
UNKNOWN = "unknown"
NO_FLAGS = "-"
NO_ROUTE = "NR"  # no route matched (no VirtualService for the path): 404
NO_HEALTHY_UPSTREAM = "UH"  # the destination subset has no ready endpoint: 503, no upstream at all
CONNECT_FAILED = "UF,URX"  # every endpoint tried refused the connection, retries used up: 503
CONNECTION_TERMINATED = "UC"  # the pod's connection was reset before an answer (not retried by default): 503


def mesh_labels(namespace: str, destination: PredictorRoute | None, upstream: bool, code: int, flags: str,
                host: str = "") -> tuple[str, ...]:
    """Label values (in MESH_LABELS order) of one request the gateway handled.

    The destination service comes from the route's cluster (the predictor's Service; without a route,
    the Host header). The destination workload comes from the upstream endpoint the gateway picked
    (`upstream`): with none (no healthy upstream) it is unknown, as Istio reports it. The gateway is the
    client here, so the connection security policy is unknown to it.
    """
    if destination is None:
        service = service_name_ = host or UNKNOWN
        service_namespace = UNKNOWN
    else:
        service_name_ = destination.service
        service = f"{destination.service}.{namespace}.svc.cluster.local"
        service_namespace = namespace
    if upstream and destination is not None:
        workload, workload_namespace = destination.workload, namespace
        principal = f"spiffe://cluster.local/ns/{namespace}/sa/default"
        source_principal = f"spiffe://cluster.local/ns/{GATEWAY_NAMESPACE}/sa/{GATEWAY}-service-account"
        version = destination.pod_version or UNKNOWN
        revision = destination.pod_version or "latest"
        cluster = "Kubernetes"
        app = canonical = destination.workload  # Seldon's pods carry app=<their Deployment>
    else:
        workload = workload_namespace = principal = source_principal = version = revision = UNKNOWN
        cluster = app = canonical = UNKNOWN
    labels = {
        "reporter": "source", "source_workload": GATEWAY, "source_workload_namespace": GATEWAY_NAMESPACE,
        "source_principal": source_principal, "source_app": GATEWAY, "source_version": UNKNOWN,
        "source_canonical_service": GATEWAY, "source_canonical_revision": "latest", "source_cluster": "Kubernetes",
        "destination_workload": workload, "destination_workload_namespace": workload_namespace,
        "destination_principal": principal, "destination_app": app, "destination_version": version,
        "destination_service": service, "destination_service_name": service_name_,
        "destination_service_namespace": service_namespace, "destination_canonical_service": canonical,
        "destination_canonical_revision": revision, "destination_cluster": cluster,
        "request_protocol": "http", "response_flags": flags, "connection_security_policy": UNKNOWN,
        "response_code": str(code), "grpc_response_status": "",
    }
    return tuple(labels[name] for name in MESH_LABELS)


def namespaces_of(keys: Iterable[tuple[str, str]]) -> list[str]:
    return sorted({namespace for namespace, _ in keys})


# ------------------------------------------------------------------ the comparing mirror (not Istio's)

# Istio's mirror is fire-and-forget: the sidecar drops the shadow's answer and nothing compares it. This
# data plane also keeps the two answers of each mirrored prediction side by side and counts, per row,
# whether the shadow predicted the class the live predictor answered (a shadow that failed where the live
# answer did not counts its rows as "error": trials that did not agree), what a request logger joined on
# the request id would give offline on a real cluster. Exported with the executor series of the namespace.
MIRROR_METRIC = "dataplane_mirror_answers_total"
MIRROR_HELP = ("Rows of mirrored predictions by whether the shadow's class equals the live answer's "
               "(a local data plane feature: Istio's mirror discards the shadow's answer)")
MIRROR_LABELS = ("deployment_name", "predictor_name", "live_predictor_name", "outcome")


def predicted_classes(body: bytes) -> list[int] | None:
    """The class of each row of a Seldon answer: a label, or the argmax of per-class probabilities. None
    when the answer is not one (an error, another payload)."""
    try:
        answer = json.loads(body)
        rows = answer["data"]["ndarray"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(rows, list):
        return None
    classes = []
    for row in rows:
        if isinstance(row, list) and len(row) == 1 and not isinstance(row[0], list):
            row = row[0]  # [[label], ...]
        if isinstance(row, list):
            if not row or not all(isinstance(p, int | float) for p in row):
                return None
            classes.append(max(range(len(row)), key=lambda i: row[i]))
        elif isinstance(row, int) and not isinstance(row, bool):
            classes.append(row)
        elif isinstance(row, float) and row.is_integer():
            classes.append(int(row))  # a label sent as a float; a score (0.93) is no class
        else:
            return None
    return classes


def compare_answers(live: bytes, shadow: bytes) -> tuple[int, int] | None:
    """(rows that agree, rows that disagree) of two answers to one request; None when they cannot be compared
    (either is not a prediction, or they have different numbers of rows)."""
    a, b = predicted_classes(live), predicted_classes(shadow)
    if a is None or b is None or len(a) != len(b):
        return None
    agree = sum(1 for x, y in zip(a, b, strict=True) if x == y)
    return agree, len(a) - agree
