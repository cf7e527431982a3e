"""Seldon Core's validating webhook, served by the local data plane, judged through the real API server.

The data plane (started, or reused when healthy, by ``localcluster.services.up``) serves the webhook over
HTTPS and registers it; every SeldonDeployment write here goes through the API server with kubectl:

- the registration is what the webhook needs (URL on loopback, CA bundle, CREATE/UPDATE of every served
  version, failurePolicy Fail, sideEffects None, a short timeout) and registering again changes nothing;
- every upstream example (shared/seldon-v1/examples beside the repository; missing means failing) and the
  repository's example is accepted on create and on update;
- a malformed variant of an example per rule is refused on create and on update with that rule's message,
  as kubectl prints it (``The SeldonDeployment "<spec.name>" is invalid: <field>: Invalid value: ...``),
  and a refused update leaves the stored object as it was.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from localcluster import services, webhook_registration
from localcluster.dataplane import webhook
from localcluster.seldon_reference import UPSTREAM_EXAMPLES
from testkit.kube import Kube

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO.parent / "shared" / "seldon-v1" / "examples"
REPO_EXAMPLE = REPO / "examples" / "seldondeployment.yaml"
# The data plane would try to serve these (images, gs:// models it cannot run): it is told not to.
NOT_SERVED = {"localcluster.modelrollout.dev/serve": "false"}


@pytest.fixture(scope="module")
def dataplane(cluster: Kube) -> services.Services:
    """The shared data plane with its webhook registered and enforced (reused when healthy, never stopped here)."""
    return services.up()


def load(name: str) -> dict[str, Any]:
    """The one SeldonDeployment of an example, ready for a test namespace (its own namespace dropped)."""
    path = REPO_EXAMPLE if name == REPO_EXAMPLE.name else EXAMPLES / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: the upstream Seldon Core v1.18.2 examples live in shared/seldon-v1/examples "
                    "next to the repository root; these tests cannot run without them")
    docs = [json.loads(path.read_text())] if path.suffix == ".json" else list(yaml.safe_load_all(path.read_text()))
    [obj] = [copy.deepcopy(d) for d in docs if isinstance(d, dict) and d.get("kind") == "SeldonDeployment"]
    metadata = obj["metadata"]
    metadata.pop("namespace", None)
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **NOT_SERVED}
    return dict(obj)


def refusal(kube: Kube, verb: str, obj: dict[str, Any], namespace: str) -> str:
    result = kube.run(verb, "-n", namespace, "-f", "-", stdin=json.dumps(obj), check=False)
    assert result.returncode != 0, f"kubectl {verb} accepted {json.dumps(obj['spec'])}"
    return result.stderr


def rv(kube: Kube, obj: dict[str, Any], namespace: str) -> str:
    kind = f"seldondeployments.{obj['apiVersion'].split('/')[1]}.{webhook.GROUP}"
    return str(kube.get(kind, obj["metadata"]["name"], namespace)["metadata"]["resourceVersion"])


# ------------------------------------------------------------------------------------------------ registration


def test_the_webhook_is_registered_as_seldon_registers_it(cluster: Kube, dataplane: services.Services) -> None:
    config = json.loads(cluster.run("get", "validatingwebhookconfiguration",
                                    webhook_registration.CONFIGURATION_NAME, "-o", "json").stdout)
    [hook] = config["webhooks"]
    assert hook["name"] == "v1.vseldondeployment.kb.io"
    assert hook["clientConfig"]["url"] == \
        f"https://127.0.0.1:{dataplane.webhook_port}/validate-machinelearning-seldon-io-v1-seldondeployment"
    ca = (webhook_registration.PKI / "ca.crt").read_bytes()
    assert hook["clientConfig"]["caBundle"] == base64.b64encode(ca).decode()
    assert hook["rules"] == [{"apiGroups": ["machinelearning.seldon.io"], "apiVersions": ["v1", "v1alpha2", "v1alpha3"],
                              "operations": ["CREATE", "UPDATE"], "resources": ["seldondeployments"], "scope": "*"}]
    assert (hook["sideEffects"], hook["admissionReviewVersions"], hook["failurePolicy"]) == ("None", ["v1"], "Fail")
    assert 1 <= hook["timeoutSeconds"] <= 10
    assert webhook_registration.answers(dataplane.webhook_port)  # TLS verified against the local CA, for 127.0.0.1


def test_registering_again_changes_nothing(cluster: Kube, dataplane: services.Services) -> None:
    def version() -> str:
        return str(json.loads(cluster.run("get", "validatingwebhookconfiguration",
                                          webhook_registration.CONFIGURATION_NAME, "-o", "json").stdout)
                   ["metadata"]["resourceVersion"])
    before = version()
    webhook_registration.register(dataplane.webhook_port)
    assert version() == before


def test_a_refusal_comes_from_the_webhook(cluster: Kube, namespace: str, dataplane: services.Services) -> None:
    """kubectl prints an Invalid answer by its causes; the API's answer itself (what the operator's client
    gets) says who refused: 422 Invalid, the webhook named, Seldon's message and one cause per problem."""
    obj = load("05-iter8-promoted-single-sklearn.yaml")
    obj["spec"]["predictors"][0]["traffic"] = 50
    api = k8s.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))  # type: ignore[no-untyped-call]
    with pytest.raises(ApiException) as refused:
        api.create_namespaced_custom_object(webhook.GROUP, "v1", namespace, "seldondeployments", obj)
    assert refused.value.status == 422
    answer = json.loads(refused.value.body)
    assert answer["reason"] == "Invalid"
    assert answer["message"] == (
        'admission webhook "v1.vseldondeployment.kb.io" denied the request: SeldonDeployment.machinelearning.seldon.io'
        ' "" is invalid: spec: Invalid value: "default": Traffic must sum be 100 for a single predictor when set')
    assert answer["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec",
                                            "message": 'Invalid value: "default": Traffic must sum be 100 for a '
                                                       'single predictor when set'}]


# ------------------------------------------------------------------------------------------------ accepted


@pytest.mark.parametrize("name", [*UPSTREAM_EXAMPLES, REPO_EXAMPLE.name])
def test_example_is_accepted_on_create_and_update(cluster: Kube, namespace: str, dataplane: services.Services,
                                                  name: str) -> None:
    obj = load(name)
    cluster.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(obj))
    obj["metadata"]["annotations"]["example.com/updated"] = "yes"
    cluster.run("replace", "-n", namespace, "-f", "-", stdin=json.dumps(obj))


def test_the_upstream_examples_are_the_ten_expected() -> None:
    if not EXAMPLES.is_dir():
        pytest.fail(f"{EXAMPLES} is missing (shared/seldon-v1/examples next to the repository root)")
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".json", ".yaml", ".yml")) == \
        sorted(UPSTREAM_EXAMPLES)


# ------------------------------------------------------------------------------------------------ refused


Spec = dict[str, Any]


def predictors(spec: Spec) -> list[dict[str, Any]]:
    return list(spec["predictors"])


def _duplicate_names(spec: Spec) -> None:
    spec["predictors"][1]["name"] = "main"


def _duplicate_svc_name(spec: Spec) -> None:
    for p in predictors(spec):
        p["annotations"] = {"seldon.io/svc-name": "canary-svc"}


def _shadow_alone(spec: Spec) -> None:
    spec["predictors"] = [p for p in predictors(spec) if p.get("shadow")]


def _two_shadows(spec: Spec) -> None:
    spec["predictors"].append({**copy.deepcopy(spec["predictors"][1]), "name": "shadow-2"})


def _shadow_traffic_150(spec: Spec) -> None:
    spec["predictors"][1]["traffic"] = 150


def _traffic_sums_to_90(spec: Spec) -> None:
    spec["predictors"][1]["traffic"] = 15


def _single_traffic_50(spec: Spec) -> None:
    spec["predictors"][0]["traffic"] = 50


def _sklearn_without_model_uri(spec: Spec) -> None:
    del spec["predictors"][0]["graph"]["modelUri"]


def _node_without_container(spec: Spec) -> None:
    spec["predictors"][0]["componentSpecs"].pop()  # classifier2's container: the graph's child keeps no container


def _logger_without_mode(spec: Spec) -> None:
    spec["predictors"][0]["graph"]["logger"] = {"url": "http://logger.seldon-system"}


def _nested_logger_without_mode(spec: Spec) -> None:
    spec["predictors"][0]["graph"]["children"][0]["logger"] = {"url": "http://logger.seldon-system"}


def _no_predictors(spec: Spec) -> None:
    spec["predictors"] = []


def _two_endpoint_types(spec: Spec) -> None:
    spec["predictors"][0]["graph"]["children"][0]["endpoint"] = {"type": "GRPC"}


def _kafka_without_topics(spec: Spec) -> None:
    spec["serverType"] = "kafka"


def _unknown_prepackaged_server(spec: Spec) -> None:
    spec["predictors"][0]["graph"]["implementation"] = "CUSTOM_SERVER"


def _no_engine_on_a_graph(spec: Spec) -> None:
    spec["predictors"][0]["annotations"] = {"seldon.io/no-engine": "true"}


def _unknown_type_without_methods(spec: Spec) -> None:
    spec["predictors"][0]["graph"]["type"] = "UNKNOWN_TYPE"


def _set(**fields: Any) -> Callable[[Spec], None]:
    return lambda spec: spec.update(fields)


MIXED = "Mixed transport types found. Remove graph endpoint.types if transport set at deployment level"
MULTIPLE = "Multiple endpoint.types found - can only have 1 type in graph. Please use spec.transport"
KAFKA = "For kafka please supply svcOrchSpec envs KAFKA_BROKER, KAFKA_INPUT_TOPIC, KAFKA_OUTPUT_TOPIC"
# (case, example it starts from, the change, the message kubectl prints for it)
MALFORMED: list[tuple[str, str, Callable[[Spec], None], str]] = [
    ("duplicate-predictor-names", "09-istio-canary-75-25.yaml", _duplicate_names,
     'spec.predictors[1]: Invalid value: "main": Duplicate predictor name'),
    ("duplicate-svc-name", "09-istio-canary-75-25.yaml", _duplicate_svc_name,
     'spec.predictors[1]: Invalid value: "canary": Found duplicate service name in seldon.io/svc-name with value '
     'canary-svc'),
    ("shadow-alone", "06-shadow-sklearn.yaml", _shadow_alone,
     'spec.predictors[0]: Invalid value: "shadow": Shadow can not exist as only predictor'),
    ("two-shadows", "06-shadow-sklearn.yaml", _two_shadows,
     'spec: Invalid value: "shadow-2": Multiple shadows are not allowed'),
    ("shadow-traffic-150", "10-istio-shadow-traffic-100.yaml", _shadow_traffic_150,
     'spec: Invalid value: "shadow": shadow traffic is illegal, the traffic number should be between [0, 100]'),
    ("traffic-sums-to-90", "09-istio-canary-75-25.yaml", _traffic_sums_to_90,
     'spec: Invalid value: "main": Traffic must sum to 100 for multiple predictors'),
    ("single-predictor-traffic-50", "05-iter8-promoted-single-sklearn.yaml", _single_traffic_50,
     'spec: Invalid value: "default": Traffic must sum be 100 for a single predictor when set'),
    ("sklearn-server-without-model-uri", "05-iter8-promoted-single-sklearn.yaml", _sklearn_without_model_uri,
     'spec.predictors[0].graph: Invalid value: "classifier": Predictive unit modelUri required when using '
     'standalone servers'),
    ("node-without-implementation-or-container", "02-ab-50-50-multi-container-graph.yaml", _node_without_container,
     'spec.predictors[0].graph[0]: Invalid value: "classifier2": Can\'t find container for Predictive Unit'),
    ("logger-without-mode", "05-iter8-promoted-single-sklearn.yaml", _logger_without_mode,
     'spec.predictors[0].graph: Invalid value: "": No logger mode specified'),
    ("nested-logger-without-mode", "08-protocol-v2-nested-sklearn.yaml", _nested_logger_without_mode,
     'spec.predictors[0].graph[0]: Invalid value: "": No logger mode specified'),
    ("bad-protocol", "08-protocol-v2-nested-sklearn.yaml", _set(protocol="v3"),
     'spec: Invalid value: "v3": Invalid protocol'),
    ("bad-transport", "09-istio-canary-75-25.yaml", _set(transport="http"),
     'spec: Invalid value: "http": Invalid transport'),
    ("bad-server-type", "03-ab-mlflow-80-20.yaml", _set(serverType="batch"),
     'spec: Invalid value: "batch": Invalid serverType'),
    ("no-predictors", "05-iter8-promoted-single-sklearn.yaml", _no_predictors,
     'spec: Invalid value: "": Graph contains no predictors'),
    ("two-endpoint-types", "02-ab-50-50-multi-container-graph.yaml", _two_endpoint_types,
     f'spec: Invalid value: "": {MULTIPLE}'),
    ("graph-endpoint-against-spec-transport", "09-istio-canary-75-25.yaml", _set(transport="grpc"),
     f'spec: Invalid value: "": {MIXED}'),
    ("kafka-without-topics", "01-canary-two-predictors-componentspecs.json", _kafka_without_topics,
     f'spec.predictors[0]: Invalid value: "mymodel": {KAFKA}'),
    ("prepackaged-server-not-in-predictors-map", "03-ab-mlflow-80-20.yaml", _unknown_prepackaged_server,
     'spec.predictors[0].graph: Invalid value: "wines-classifier": No entry in predictors map for CUSTOM_SERVER'),
    ("tensorflow-protocol-on-sklearn-server", "04-iter8-baseline-candidate-sklearn-xgboost.yaml",
     _set(protocol="tensorflow"),
     'spec.predictors[0].graph: Invalid value: "classifier": Prepackaged server does not handle tensorflow protocol '
     'SKLEARN_SERVER'),
    ("no-engine-with-a-graph", "02-ab-50-50-multi-container-graph.yaml", _no_engine_on_a_graph,
     'spec.predictors[0]: Invalid value: "example": Running without engine only valid for single element graphs'),
    ("unknown-type-without-methods", "09-istio-canary-75-25.yaml", _unknown_type_without_methods,
     'spec.predictors[0].graph: Invalid value: "classifier": Predictive Unit has no implementation methods defined. '
     'Change to a known type or add what methods it defines'),
]


def variant(case: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(the example, its malformed variant, the message) for a case of MALFORMED."""
    [(name, change, message)] = [(n, c, m) for k, n, c, m in MALFORMED if k == case]
    base = load(name)
    bad = copy.deepcopy(base)
    change(bad["spec"])
    return base, bad, message


def printed_by_kubectl(stderr: str, obj: dict[str, Any], message: str) -> None:
    assert f'The SeldonDeployment "{obj["spec"].get("name", "")}" is invalid' in stderr, stderr
    assert message in stderr, f"expected {message!r} in:\n{stderr}"


@pytest.mark.parametrize("case", [c[0] for c in MALFORMED])
def test_malformed_variant_is_refused_on_create(cluster: Kube, namespace: str, dataplane: services.Services,
                                                case: str) -> None:
    _, bad, message = variant(case)
    printed_by_kubectl(refusal(cluster, "create", bad, namespace), bad, message)


@pytest.mark.parametrize("case", [c[0] for c in MALFORMED])
def test_malformed_variant_is_refused_on_update(cluster: Kube, namespace: str, dataplane: services.Services,
                                                case: str) -> None:
    base, bad, message = variant(case)
    cluster.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(base))
    before = rv(cluster, base, namespace)
    printed_by_kubectl(refusal(cluster, "replace", bad, namespace), bad, message)
    assert rv(cluster, base, namespace) == before, "a refused update changed the stored object"


def test_every_served_version_is_judged(cluster: Kube, namespace: str, dataplane: services.Services) -> None:
    for version in ("v1", "v1alpha2", "v1alpha3"):
        _, bad, message = variant("duplicate-predictor-names")
        bad["apiVersion"] = f"{webhook.GROUP}/{version}"
        printed_by_kubectl(refusal(cluster, "create", bad, namespace), bad, message)


def test_a_json_patch_is_judged_on_the_object_it_makes(cluster: Kube, namespace: str,
                                                       dataplane: services.Services) -> None:
    """The operator's and users' patches are updates too: judged on the whole resulting object."""
    base = load(REPO_EXAMPLE.name)
    cluster.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(base))
    result = cluster.run("patch", "sdep", base["metadata"]["name"], "-n", namespace, "--type=json",
                         "-p", '[{"op": "replace", "path": "/spec/predictors/0/traffic", "value": 60}]', check=False)
    assert result.returncode != 0
    printed_by_kubectl(result.stderr, base, 'spec: Invalid value: "main": Traffic must sum be 100 for a single '
                                            'predictor when set')
    candidate = {**copy.deepcopy(base["spec"]["predictors"][0]), "name": "main-candidate", "traffic": 40}
    patch = [{"op": "replace", "path": "/spec/predictors/0/traffic", "value": 60},
             {"op": "add", "path": "/spec/predictors/-", "value": candidate}]
    cluster.run("patch", "sdep", base["metadata"]["name"], "-n", namespace, "--type=json", "-p", json.dumps(patch))
