"""Seldon Core v1's validating admission webhook for SeldonDeployments, as the local data plane serves it.

On a real cluster Seldon's operator registers a ValidatingWebhookConfiguration and refuses, on create and
update, SeldonDeployments its controller could not deploy (duplicate predictor names, traffic that does not
add up, a prepackaged server without a model...). The local cluster has no Seldon operator, so the data
plane serves the same rules over HTTPS on loopback and ``localcluster.webhook_registration`` registers them
with the local API server: every test, the demo and the chaos runs write SeldonDeployments through them.

``validate(sdep)`` is the rule set as a pure function, modelled on Seldon Core v1.18.2's
``SeldonDeploymentSpec.ValidateSeldonDeployment`` (operator/apis/machinelearning.seldon.io/v1/
seldondeployment_webhook.go). It reads the object the way Seldon's Go types do: a field that is absent
is its zero value (traffic 0, shadow false, no annotations), and only the fields Seldon reads matter.
Each problem is reported as Kubernetes field errors print, e.g.
``spec.predictors[1]: Invalid value: "main": Duplicate predictor name``; the API server answers a refused
write with 422 Invalid, and kubectl prints ``The SeldonDeployment "<spec.name>" is invalid: ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("dataplane.webhook")

PATH = "/validate-machinelearning-seldon-io-v1-seldondeployment"  # the path Seldon's operator serves it on
HEALTH_PATH = "/healthz"
WEBHOOK_NAME = "v1.vseldondeployment.kb.io"  # the webhook's name in Seldon's chart (kubectl shows it)
GROUP, KIND = "machinelearning.seldon.io", "SeldonDeployment"

PROTOCOLS = ("seldon", "tensorflow", "kfserving", "v2")
TRANSPORTS = ("rest", "grpc")
SERVER_TYPES = ("rpc", "kafka")
KAFKA_ENVS = ("KAFKA_BROKER", "KAFKA_INPUT_TOPIC", "KAFKA_OUTPUT_TOPIC")
SVC_NAME_ANNOTATION = "seldon.io/svc-name"
NO_ENGINE_ANNOTATION = "seldon.io/no-engine"
UNKNOWN_IMPLEMENTATION = "UNKNOWN_IMPLEMENTATION"
UNKNOWN_TYPE = "UNKNOWN_TYPE"
# Implementations the Seldon executor runs itself; any other non-empty implementation is a prepackaged server.
BUILTIN_IMPLEMENTATIONS = ("SIMPLE_MODEL", "SIMPLE_ROUTER", "RANDOM_ABTEST", "AVERAGE_COMBINER", UNKNOWN_IMPLEMENTATION)
# The prepackaged servers of the `predictor_servers` entry of seldon-config, as the v1.18.2 chart installs it;
# a prepackaged node whose container names no image must use one of these.
PREDICTOR_SERVERS = ("MLFLOW_SERVER", "SKLEARN_SERVER", "TENSORFLOW_SERVER", "XGBOOST_SERVER", "TRITON_SERVER",
                     "HUGGINGFACE_SERVER", "TEMPO_SERVER")
HUGGINGFACE_SERVER = "HUGGINGFACE_SERVER"  # the one prepackaged server that may load its model without modelUri
NOT_FOR_TENSORFLOW_PROTOCOL = ("SKLEARN_SERVER", "XGBOOST_SERVER", "MLFLOW_SERVER", HUGGINGFACE_SERVER)


# ------------------------------------------------------------------------------------------------ the rules


@dataclass(frozen=True)
class FieldError:
    """One "Invalid value" field error, as Kubernetes' field.Invalid reports it."""

    field: str
    value: str
    detail: str

    @property
    def body(self) -> str:
        return f"Invalid value: {json.dumps(self.value, ensure_ascii=False)}: {self.detail}"

    def __str__(self) -> str:
        return f"{self.field}: {self.body}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _traffic(predictor: Mapping[str, Any]) -> int:
    value = predictor.get("traffic")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _graph_nodes(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in _items(node.get("children")):
        yield from _graph_nodes(_mapping(child))


def _container(predictor: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """The first container of the predictor's componentSpecs with this name (None when there is none)."""
    for component in _items(predictor.get("componentSpecs")):
        for container in _items(_mapping(_mapping(component).get("spec")).get("containers")):
            if _text(_mapping(container).get("name")) == name:
                return _mapping(container)
    return None


def _is_prepackaged(implementation: str) -> bool:
    return bool(implementation) and implementation not in BUILTIN_IMPLEMENTATIONS


def _check_unit(node: Mapping[str, Any], predictor: Mapping[str, Any], path: str, protocol: str) -> list[FieldError]:
    """A graph node and its children (checkPredictiveUnits). A child's path is its parent's plus ``[i]``,
    as Seldon writes it (``spec.predictors[0].graph[1]`` is the graph's second child)."""
    errors: list[FieldError] = []
    name = _text(node.get("name"))
    implementation = node.get("implementation")
    if implementation is None or implementation == UNKNOWN_IMPLEMENTATION:
        # A node the executor does not implement runs in a container of the same name.
        if _container(predictor, name) is None:
            errors.append(FieldError(path, name, "Can't find container for Predictive Unit"))
        if node.get("type") == UNKNOWN_TYPE and not _items(node.get("methods")):
            errors.append(FieldError(path, name, "Predictive Unit has no implementation methods defined. "
                                                 "Change to a known type or add what methods it defines"))
    elif _is_prepackaged(_text(implementation)):
        implementation = _text(implementation)
        if not _text(node.get("modelUri")) and implementation != HUGGINGFACE_SERVER:
            errors.append(FieldError(path, name, "Predictive unit modelUri required when using standalone servers"))
        if protocol == "tensorflow" and implementation in NOT_FOR_TENSORFLOW_PROTOCOL:
            errors.append(FieldError(path, name, f"Prepackaged server does not handle tensorflow protocol "
                                                 f"{implementation}"))
        container = _container(predictor, name)
        if (container is None or not _text(container.get("image"))) and implementation not in PREDICTOR_SERVERS:
            errors.append(FieldError(path, name, f"No entry in predictors map for {implementation}"))
    logger = node.get("logger")
    if isinstance(logger, Mapping) and not _text(logger.get("mode")):
        errors.append(FieldError(path, "", "No logger mode specified"))
    for i, child in enumerate(_items(node.get("children"))):
        errors.extend(_check_unit(_mapping(child), predictor, f"{path}[{i}]", protocol))
    return errors


def _check_traffic(predictors: list[Mapping[str, Any]]) -> list[FieldError]:
    """Shadows: at most one, its traffic (the mirrored share) within 0..100. The other predictors' traffic
    (absent counts 0) sums to 100 when there are two or more of them; a deployment with a single predictor
    may leave it unset (0) or give it 100, nothing in between."""
    errors: list[FieldError] = []
    live_traffic, shadows = 0, 0
    for predictor in predictors:
        name = _text(predictor.get("name"))
        if predictor.get("shadow") is True:
            shadows += 1
            if shadows > 1:
                errors.append(FieldError("spec", name, "Multiple shadows are not allowed"))
            if not 0 <= _traffic(predictor) <= 100:
                errors.append(FieldError("spec", name, "shadow traffic is illegal, the traffic number should be "
                                                       "between [0, 100]"))
        else:
            live_traffic += _traffic(predictor)
    first = _text(predictors[0].get("name")) if predictors else ""
    if live_traffic != 100 and len(predictors) - shadows > 1:
        errors.append(FieldError("spec", first, "Traffic must sum to 100 for multiple predictors"))
    if 0 < live_traffic < 100 and len(predictors) == 1:
        errors.append(FieldError("spec", first, "Traffic must sum be 100 for a single predictor when set"))
    return errors


def check(sdep: Mapping[str, Any]) -> list[FieldError]:
    """Every rule Seldon's webhook applies to a SeldonDeployment's spec, in the order it applies them."""
    spec = _mapping(sdep.get("spec"))
    predictors = [_mapping(p) for p in _items(spec.get("predictors"))]
    protocol, transport = _text(spec.get("protocol")), _text(spec.get("transport"))
    server_type = _text(spec.get("serverType"))
    errors: list[FieldError] = []

    if protocol and protocol not in PROTOCOLS:
        errors.append(FieldError("spec", protocol, "Invalid protocol"))
    if transport and transport not in TRANSPORTS:
        errors.append(FieldError("spec", transport, "Invalid transport"))
    if server_type and server_type not in SERVER_TYPES:
        errors.append(FieldError("spec", server_type, "Invalid serverType"))

    if server_type == "kafka":  # the executor reads its Kafka settings from the svcOrch environment
        for i, predictor in enumerate(predictors):
            env = [_text(_mapping(e).get("name")) for e in _items(_mapping(predictor.get("svcOrchSpec")).get("env"))]
            if not env or sum(name in KAFKA_ENVS for name in env) < len(KAFKA_ENVS):
                errors.append(FieldError(f"spec.predictors[{i}]", _text(predictor.get("name")),
                                         "For kafka please supply svcOrchSpec envs " + ", ".join(KAFKA_ENVS)))

    if len(predictors) == 1 and predictors[0].get("shadow") is True:
        errors.append(FieldError("spec.predictors[0]", _text(predictors[0].get("name")),
                                 "Shadow can not exist as only predictor"))

    service_names: set[str] = set()
    for i, predictor in enumerate(predictors):
        annotations = _mapping(predictor.get("annotations"))
        if SVC_NAME_ANNOTATION in annotations:
            service = _text(annotations[SVC_NAME_ANNOTATION])
            if service in service_names:
                errors.append(FieldError(f"spec.predictors[{i}]", _text(predictor.get("name")),
                                         f"Found duplicate service name in {SVC_NAME_ANNOTATION} with value "
                                         f"{service}"))
            service_names.add(service)

    if not predictors:
        errors.append(FieldError("spec", transport, "Graph contains no predictors"))

    endpoint_types: set[str] = set()
    predictor_names: set[str] = set()
    for i, predictor in enumerate(predictors):
        graph = _mapping(predictor.get("graph"))
        nodes = list(_graph_nodes(graph))
        endpoint_types.update(t for n in nodes if (t := _text(_mapping(n.get("endpoint")).get("type"))))
        name = _text(predictor.get("name"))
        if NO_ENGINE_ANNOTATION in _mapping(predictor.get("annotations")) and len(nodes) > 1:
            errors.append(FieldError(f"spec.predictors[{i}]", name,
                                     "Running without engine only valid for single element graphs"))
        if name in predictor_names:
            errors.append(FieldError(f"spec.predictors[{i}]", name, "Duplicate predictor name"))
        predictor_names.add(name)
        errors.extend(_check_unit(graph, predictor, f"spec.predictors[{i}].graph", protocol))

    if len(endpoint_types) > 1:
        errors.append(FieldError("spec", "", "Multiple endpoint.types found - can only have 1 type in graph. "
                                             "Please use spec.transport"))
    elif endpoint_types and transport:
        (endpoint_type,) = endpoint_types
        if (endpoint_type == "REST" and transport != "rest") or (endpoint_type == "GRPC" and transport != "grpc"):
            errors.append(FieldError("spec", "", "Mixed transport types found. Remove graph endpoint.types if "
                                                 "transport set at deployment level"))

    errors.extend(_check_traffic(predictors))
    return errors


def validate(sdep: Mapping[str, Any]) -> list[str]:
    """Seldon's webhook rules: the problems that make it refuse this SeldonDeployment (none: accepted)."""
    return [str(error) for error in check(sdep)]


# ------------------------------------------------------------------------------------------------ AdmissionReview


def invalid_status(sdep: Mapping[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    """The 422 Invalid status Seldon's webhook refuses with. As upstream, the name is the spec's ``name``."""
    name = _text(_mapping(sdep.get("spec")).get("name"))
    messages = list(dict.fromkeys(str(e) for e in errors))
    joined = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    return {
        "status": "Failure", "code": 422, "reason": "Invalid",
        "message": f"{KIND}.{GROUP} {json.dumps(name)} is invalid: {joined}",
        "details": {"name": name, "group": GROUP, "kind": KIND,
                    "causes": [{"reason": "FieldValueInvalid", "message": e.body, "field": e.field} for e in errors]},
    }


def review(admission_review: Mapping[str, Any]) -> dict[str, Any]:
    """Answer an admission.k8s.io/v1 AdmissionReview: allowed, or refused with the rules' field errors.

    CREATE and UPDATE are judged on the new object; other operations are allowed. A review without a
    request or an object is refused with 400, as controller-runtime's webhook does.
    """
    request = _mapping(admission_review.get("request"))
    response: dict[str, Any] = {"uid": _text(request.get("uid"))}
    obj = request.get("object")
    if not request or (request.get("operation") in ("CREATE", "UPDATE") and not isinstance(obj, Mapping)):
        response.update(allowed=False, status={"status": "Failure", "code": 400,
                                               "message": "the AdmissionReview has no request object"})
    elif request.get("operation") not in ("CREATE", "UPDATE") or not isinstance(obj, Mapping):
        response.update(allowed=True, status={"code": 200})
    elif errors := check(obj):
        response.update(allowed=False, status=invalid_status(obj, errors))
    else:
        response.update(allowed=True, status={"code": 200})
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


# ------------------------------------------------------------------------------------------------ the HTTPS server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the API server reuses its connection
    timeout = 30  # an idle or stalled connection frees its thread
    server_version = "seldon-webhook"

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == HEALTH_PATH:
            self._reply(200, b"ok", "text/plain")
        else:
            self._reply(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.split("?", 1)[0] != PATH:
            self._reply(404, b"not found", "text/plain")
            return
        try:
            incoming = json.loads(body)
        except ValueError:
            self._reply(400, b'{"error": "the body is not JSON"}')
            return
        answer = review(incoming if isinstance(incoming, Mapping) else {})
        response = answer["response"]
        if not response["allowed"]:
            request = _mapping(incoming.get("request")) if isinstance(incoming, Mapping) else {}
            log.info("refused %s %s/%s: %s", request.get("operation"), request.get("namespace"),
                     request.get("name"), response["status"].get("message"))
        self._reply(200, json.dumps(answer).encode())

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log; refusals are logged above


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops the connection or fails the TLS handshake is not the server's problem.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class WebhookServer:
    """The webhook over HTTPS in its own threads, so a busy ingress on the event loop never delays it."""

    def __init__(self, port: int, certfile: Path, keyfile: Path, host: str = "127.0.0.1") -> None:
        self.host, self.requested_port, self.certfile, self.keyfile = host, port, certfile, keyfile
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "not started"
        return int(self._httpd.server_address[1])

    def start(self) -> WebhookServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.certfile), str(self.keyfile))
        httpd = _Server((self.host, self.requested_port), _Handler)
        # The handshake happens in each connection's own thread, not in the accepting one.
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="seldon-webhook", daemon=True)
        self._thread.start()
        log.info("Seldon validating webhook on https://%s:%d%s", self.host, self.port, PATH)
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The data plane's options for the webhook (off unless --webhook-port is given)."""
    parser.add_argument("--webhook-port", type=int, default=0, help="serve Seldon's validating webhook here (HTTPS)")
    parser.add_argument("--webhook-cert", type=Path, help="its serving certificate (PEM)")
    parser.add_argument("--webhook-key", type=Path, help="its private key (PEM)")


def start_from_args(args: argparse.Namespace) -> WebhookServer | None:
    if not args.webhook_port:
        return None
    if args.webhook_cert is None or args.webhook_key is None:
        raise SystemExit("--webhook-port needs --webhook-cert and --webhook-key")
    return WebhookServer(args.webhook_port, args.webhook_cert, args.webhook_key).start()
