"""Seldon Core v1's SeldonDeployment webhook rules (localcluster.dataplane.webhook.validate), rule by rule:
what each accepts and what it refuses, with the message Seldon's webhook gives. Plus: every upstream example
manifest (shared/seldon-v1/examples beside the repository; these tests fail when it is missing) and the
repository's own example pass, and the AdmissionReview answer has the shape the API server expects."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.dataplane.webhook import FieldError, check, review, validate
from localcluster.seldon_reference import UPSTREAM_EXAMPLES

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO.parent / "shared" / "seldon-v1" / "examples"


def sklearn(name: str = "main", traffic: int | None = None, node: str = "classifier", **extra: Any) -> dict[str, Any]:
    predictor: dict[str, Any] = {"name": name, "graph": {"name": node, "implementation": "SKLEARN_SERVER",
                                                         "modelUri": "gs://models/iris"}, **extra}
    if traffic is not None:
        predictor["traffic"] = traffic
    return predictor


def custom(name: str = "main", traffic: int | None = None, node: str = "classifier",
           container: str | None = None, **extra: Any) -> dict[str, Any]:
    """A predictor whose one node runs in its own container (no implementation)."""
    predictor: dict[str, Any] = {
        "name": name, "graph": {"name": node, "type": "MODEL"},
        "componentSpecs": [{"spec": {"containers": [{"name": container or node, "image": "example/model:1"}]}}],
        **extra}
    if traffic is not None:
        predictor["traffic"] = traffic
    return predictor


def sdep(*predictors: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "machinelearning.seldon.io/v1", "kind": "SeldonDeployment", "metadata": {"name": "iris"},
            "spec": {"name": "iris", **spec, "predictors": list(predictors)}}


def with_graph(predictor: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The predictor with these fields set on its graph's root node."""
    predictor["graph"].update(fields)
    return predictor


def refused_with(obj: dict[str, Any], message: str) -> None:
    errors = validate(obj)
    assert message in errors, f"expected {message!r} among {errors!r}"


def accepted(obj: dict[str, Any]) -> None:
    assert validate(obj) == []


# ------------------------------------------------------------------------------------------------ spec values


@pytest.mark.parametrize("protocol", ["seldon", "tensorflow", "kfserving", "v2", None])
def test_known_protocols_are_accepted(protocol: str | None) -> None:
    obj = sdep(custom()) if protocol is None else sdep(custom(), protocol=protocol)
    accepted(obj)


def test_unknown_protocol_is_refused() -> None:
    refused_with(sdep(custom(), protocol="v3"), 'spec: Invalid value: "v3": Invalid protocol')
    refused_with(sdep(custom(), protocol="Seldon"), 'spec: Invalid value: "Seldon": Invalid protocol')


@pytest.mark.parametrize("transport", ["rest", "grpc", ""])
def test_known_transports_are_accepted(transport: str) -> None:
    accepted(sdep(custom(), transport=transport))


def test_unknown_transport_is_refused() -> None:
    refused_with(sdep(custom(), transport="http"), 'spec: Invalid value: "http": Invalid transport')


@pytest.mark.parametrize("server_type", ["rpc", ""])
def test_known_server_types_are_accepted(server_type: str) -> None:
    accepted(sdep(custom(), serverType=server_type))


def test_unknown_server_type_is_refused() -> None:
    refused_with(sdep(custom(), serverType="batch"), 'spec: Invalid value: "batch": Invalid serverType')


def test_kafka_needs_broker_and_topics_in_the_svc_orch_environment() -> None:
    env = [{"name": n, "value": "x"} for n in ("KAFKA_BROKER", "KAFKA_INPUT_TOPIC", "KAFKA_OUTPUT_TOPIC")]
    accepted(sdep(custom(svcOrchSpec={"env": env}), serverType="kafka"))
    message = ('spec.predictors[0]: Invalid value: "main": For kafka please supply svcOrchSpec envs KAFKA_BROKER, '
               'KAFKA_INPUT_TOPIC, KAFKA_OUTPUT_TOPIC')
    refused_with(sdep(custom(), serverType="kafka"), message)
    refused_with(sdep(custom(svcOrchSpec={"env": env[:2]}), serverType="kafka"), message)


# ------------------------------------------------------------------------------------------------ predictors


def test_at_least_one_predictor() -> None:
    refused_with(sdep(), 'spec: Invalid value: "": Graph contains no predictors')
    refused_with({"spec": {}}, 'spec: Invalid value: "": Graph contains no predictors')
    accepted(sdep(custom()))


def test_predictor_names_are_unique() -> None:
    accepted(sdep(custom("a", 50), custom("b", 50)))
    refused_with(sdep(custom("a", 50), custom("a", 50)),
                 'spec.predictors[1]: Invalid value: "a": Duplicate predictor name')


def test_a_duplicate_name_counts_shadows_too() -> None:
    refused_with(sdep(custom("a", 100), custom("a", shadow=True)),
                 'spec.predictors[1]: Invalid value: "a": Duplicate predictor name')


def test_svc_name_annotations_are_unique() -> None:
    one, two = ({"seldon.io/svc-name": "iris-a"}, {"seldon.io/svc-name": "iris-b"})
    accepted(sdep(custom("a", 50, annotations=one), custom("b", 50, annotations=two)))
    accepted(sdep(custom("a", 50, annotations=one), custom("b", 50)))
    refused_with(sdep(custom("a", 50, annotations=one), custom("b", 50, annotations=one)),
                 'spec.predictors[1]: Invalid value: "b": Found duplicate service name in seldon.io/svc-name '
                 'with value iris-a')


def test_svc_name_of_a_shadow_counts_too() -> None:
    same = {"seldon.io/svc-name": "iris"}
    refused_with(sdep(custom("a", 100, annotations=same), custom("b", shadow=True, annotations=same)),
                 'spec.predictors[1]: Invalid value: "b": Found duplicate service name in seldon.io/svc-name '
                 'with value iris')


def test_no_engine_only_for_single_node_graphs() -> None:
    no_engine = {"seldon.io/no-engine": "true"}
    accepted(sdep(custom(annotations=no_engine)))
    two_nodes = custom(annotations=no_engine)
    two_nodes["graph"]["children"] = [{"name": "child", "implementation": "SKLEARN_SERVER", "modelUri": "gs://m"}]
    refused_with(sdep(two_nodes),
                 'spec.predictors[0]: Invalid value: "main": Running without engine only valid for single element '
                 'graphs')


# ------------------------------------------------------------------------------------------------ shadows and traffic


def test_a_shadow_is_never_the_only_predictor() -> None:
    refused_with(sdep(custom("shadow", shadow=True)),
                 'spec.predictors[0]: Invalid value: "shadow": Shadow can not exist as only predictor')
    accepted(sdep(custom("main"), custom("shadow", shadow=True)))


def test_at_most_one_shadow() -> None:
    refused_with(sdep(custom("main", 100), custom("s1", shadow=True), custom("s2", shadow=True)),
                 'spec: Invalid value: "s2": Multiple shadows are not allowed')
    three = validate(sdep(custom("main", 100), *(custom(f"s{i}", shadow=True) for i in range(3))))
    assert [e for e in three if "Multiple shadows" in e] == [
        'spec: Invalid value: "s1": Multiple shadows are not allowed',
        'spec: Invalid value: "s2": Multiple shadows are not allowed']


@pytest.mark.parametrize("traffic", [0, 1, 50, 100, None])
def test_a_shadows_traffic_is_a_mirror_share_within_0_to_100(traffic: int | None) -> None:
    accepted(sdep(custom("main", 100), custom("shadow", traffic, shadow=True)))


@pytest.mark.parametrize("traffic", [150, 101, -1])
def test_a_shadows_traffic_outside_0_to_100_is_refused(traffic: int) -> None:
    refused_with(sdep(custom("main", 100), custom("shadow", traffic, shadow=True)),
                 'spec: Invalid value: "shadow": shadow traffic is illegal, the traffic number should be between '
                 '[0, 100]')


@pytest.mark.parametrize("split", [(50, 50), (100, 0), (0, 100), (60, 30, 10), (75, 25)])
def test_live_predictors_traffic_summing_to_100_is_accepted(split: tuple[int, ...]) -> None:
    accepted(sdep(*(custom(f"p{i}", t) for i, t in enumerate(split))))


@pytest.mark.parametrize("split", [(75, 15), (50, 60), (0, 0), (None, None), (100, None, 10)])
def test_live_predictors_traffic_not_summing_to_100_is_refused(split: tuple[int | None, ...]) -> None:
    refused_with(sdep(*(custom(f"p{i}", t) for i, t in enumerate(split))),
                 'spec: Invalid value: "p0": Traffic must sum to 100 for multiple predictors')


def test_unset_traffic_counts_0_and_a_shadows_traffic_does_not_count() -> None:
    accepted(sdep(custom("a", 100), custom("b"), custom("shadow", 100, shadow=True)))
    refused_with(sdep(custom("a", 90), custom("b"), custom("shadow", 10, shadow=True)),
                 'spec: Invalid value: "a": Traffic must sum to 100 for multiple predictors')


@pytest.mark.parametrize("traffic", [None, 0, 100])
def test_a_single_predictor_has_traffic_unset_0_or_100(traffic: int | None) -> None:
    accepted(sdep(custom("main", traffic)))


@pytest.mark.parametrize("traffic", [1, 50, 99])
def test_a_single_predictor_with_partial_traffic_is_refused(traffic: int) -> None:
    refused_with(sdep(custom("main", traffic)),
                 'spec: Invalid value: "main": Traffic must sum be 100 for a single predictor when set')


def test_the_single_predictor_rule_is_about_the_whole_list_not_the_live_ones() -> None:
    """As upstream: with a shadow beside it, one live predictor's traffic is not checked (the sum-to-100 rule
    needs two live predictors, the single-predictor rule exactly one predictor in all)."""
    accepted(sdep(custom("main", 50), custom("shadow", shadow=True)))


# ------------------------------------------------------------------------------------------------ graph nodes


@pytest.mark.parametrize("server", ["SKLEARN_SERVER", "XGBOOST_SERVER", "TENSORFLOW_SERVER", "MLFLOW_SERVER",
                                    "TRITON_SERVER", "TEMPO_SERVER"])
def test_prepackaged_servers_need_a_model_uri(server: str) -> None:
    with_uri = sdep({"name": "main", "graph": {"name": "m", "implementation": server, "modelUri": "gs://m"}})
    accepted(with_uri)
    without = copy.deepcopy(with_uri)
    del without["spec"]["predictors"][0]["graph"]["modelUri"]
    refused_with(without, 'spec.predictors[0].graph: Invalid value: "m": Predictive unit modelUri required when '
                          'using standalone servers')


def test_the_hugging_face_server_may_load_from_the_hub_without_a_model_uri() -> None:
    accepted(sdep({"name": "main", "graph": {"name": "m", "implementation": "HUGGINGFACE_SERVER"}}))


def test_a_nested_prepackaged_node_needs_a_model_uri_too() -> None:
    obj = sdep(custom(node="pre"))
    obj["spec"]["predictors"][0]["graph"]["children"] = [
        {"name": "ok", "implementation": "SKLEARN_SERVER", "modelUri": "gs://m"},
        {"name": "model", "implementation": "SKLEARN_SERVER"}]
    assert validate(obj) == ['spec.predictors[0].graph[1]: Invalid value: "model": Predictive unit modelUri required '
                             'when using standalone servers']


def test_an_unknown_prepackaged_server_needs_an_image() -> None:
    node = {"name": "m", "implementation": "CUSTOM_SERVER", "modelUri": "gs://m"}
    refused_with(sdep({"name": "main", "graph": node}),
                 'spec.predictors[0].graph: Invalid value: "m": No entry in predictors map for CUSTOM_SERVER')
    with_image = {"name": "main", "graph": node,
                  "componentSpecs": [{"spec": {"containers": [{"name": "m", "image": "example/custom:1"}]}}]}
    accepted(sdep(with_image))


def test_tensorflow_protocol_only_with_servers_that_speak_it() -> None:
    accepted(sdep({"name": "main", "graph": {"name": "m", "implementation": "TENSORFLOW_SERVER", "modelUri": "gs://m"}},
                  protocol="tensorflow"))
    refused_with(sdep(sklearn(node="m"), protocol="tensorflow"),
                 'spec.predictors[0].graph: Invalid value: "m": Prepackaged server does not handle tensorflow '
                 'protocol SKLEARN_SERVER')


@pytest.mark.parametrize("implementation", [None, "UNKNOWN_IMPLEMENTATION"])
def test_a_node_without_implementation_needs_a_container_of_its_name(implementation: str | None) -> None:
    obj = sdep(custom(node="classifier"))
    if implementation:
        obj["spec"]["predictors"][0]["graph"]["implementation"] = implementation
    accepted(obj)
    renamed = sdep(custom(node="classifier", container="other"))
    if implementation:
        renamed["spec"]["predictors"][0]["graph"]["implementation"] = implementation
    refused_with(renamed, 'spec.predictors[0].graph: Invalid value: "classifier": Can\'t find container for '
                          'Predictive Unit')
    refused_with(sdep({"name": "main", "graph": {"name": "classifier"}}),
                 'spec.predictors[0].graph: Invalid value: "classifier": Can\'t find container for Predictive Unit')


def test_a_container_without_image_still_counts_for_a_custom_node() -> None:
    obj = sdep({"name": "main", "graph": {"name": "c"}, "componentSpecs": [{"spec": {"containers": [{"name": "c"}]}}]})
    accepted(obj)


def test_the_executors_own_implementations_need_no_container() -> None:
    obj = sdep({"name": "main", "graph": {"name": "router", "implementation": "RANDOM_ABTEST", "children": [
        {"name": "a", "implementation": "SKLEARN_SERVER", "modelUri": "gs://a"},
        {"name": "b", "implementation": "SKLEARN_SERVER", "modelUri": "gs://b"}]}})
    accepted(obj)


def test_an_unknown_type_needs_its_methods() -> None:
    node = {"name": "c", "type": "UNKNOWN_TYPE"}
    containers = [{"spec": {"containers": [{"name": "c", "image": "example/c:1"}]}}]
    refused_with(sdep({"name": "main", "graph": node, "componentSpecs": containers}),
                 'spec.predictors[0].graph: Invalid value: "c": Predictive Unit has no implementation methods '
                 'defined. Change to a known type or add what methods it defines')
    accepted(sdep({"name": "main", "graph": {**node, "methods": ["transform_input"]}, "componentSpecs": containers}))


def test_a_logger_needs_a_mode() -> None:
    for mode in ("all", "request", "response"):
        accepted(sdep(with_graph(sklearn(), logger={"mode": mode, "url": "http://log"})))
    for logger in ({"url": "http://log"}, {}):
        refused_with(sdep(with_graph(sklearn(), logger=logger)),
                     'spec.predictors[0].graph: Invalid value: "": No logger mode specified')


def test_a_childs_logger_needs_a_mode_too() -> None:
    obj = sdep(custom(node="pre"))
    obj["spec"]["predictors"][0]["graph"]["children"] = [
        {"name": "m", "implementation": "SKLEARN_SERVER", "modelUri": "gs://m", "logger": {"url": "http://log"}}]
    assert validate(obj) == ['spec.predictors[0].graph[0]: Invalid value: "": No logger mode specified']


# ------------------------------------------------------------------------------------------------ endpoint types


def two_node(first: str | None, second: str | None) -> dict[str, Any]:
    predictor = custom(node="a")
    predictor["componentSpecs"][0]["spec"]["containers"].append({"name": "b", "image": "example/b:1"})
    graph = predictor["graph"]
    graph["children"] = [{"name": "b", "type": "MODEL"}]
    for node, kind in ((graph, first), (graph["children"][0], second)):
        if kind:
            node["endpoint"] = {"type": kind}
    return predictor


@pytest.mark.parametrize("types", [("REST", "REST"), ("GRPC", None), (None, None)])
def test_one_endpoint_type_in_the_graphs(types: tuple[str | None, str | None]) -> None:
    accepted(sdep(two_node(*types)))


def test_two_endpoint_types_are_refused() -> None:
    refused_with(sdep(two_node("REST", "GRPC")),
                 'spec: Invalid value: "": Multiple endpoint.types found - can only have 1 type in graph. '
                 'Please use spec.transport')
    refused_with(sdep(with_graph(custom("a", 50), endpoint={"type": "REST"}),
                      with_graph(custom("b", 50), endpoint={"type": "GRPC"})),
                 'spec: Invalid value: "": Multiple endpoint.types found - can only have 1 type in graph. '
                 'Please use spec.transport')


def test_the_endpoint_type_agrees_with_spec_transport() -> None:
    accepted(sdep(two_node("REST", "REST"), transport="rest"))
    accepted(sdep(two_node("GRPC", None), transport="grpc"))
    mixed = 'spec: Invalid value: "": Mixed transport types found. Remove graph endpoint.types if transport set at ' \
            'deployment level'
    refused_with(sdep(two_node("REST", "REST"), transport="grpc"), mixed)
    refused_with(sdep(two_node(None, "GRPC"), transport="rest"), mixed)


# ------------------------------------------------------------------------------------------------ whole objects


def load_example(name: str) -> dict[str, Any]:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: the upstream Seldon Core v1.18.2 examples live in shared/seldon-v1/examples "
                    "next to the repository root")
    docs = [json.loads(path.read_text())] if path.suffix == ".json" else list(yaml.safe_load_all(path.read_text()))
    [found] = [d for d in docs if isinstance(d, dict) and d.get("kind") == "SeldonDeployment"]
    return dict(found)


@pytest.mark.parametrize("name", UPSTREAM_EXAMPLES)
def test_every_upstream_example_passes(name: str) -> None:
    assert validate(load_example(name)) == []


def test_the_upstream_examples_are_the_ten_expected() -> None:
    if not EXAMPLES.is_dir():
        pytest.fail(f"{EXAMPLES} is missing (shared/seldon-v1/examples next to the repository root)")
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".json", ".yaml", ".yml")) == \
        sorted(UPSTREAM_EXAMPLES)


def test_the_repository_example_passes() -> None:
    assert validate(yaml.safe_load((REPO / "examples" / "seldondeployment.yaml").read_text())) == []


def test_every_problem_is_reported_in_seldons_order() -> None:
    obj = sdep(custom("a", 60), custom("a", 30, node="x", container="y"), protocol="v3")
    assert validate(obj) == [
        'spec: Invalid value: "v3": Invalid protocol',
        'spec.predictors[1]: Invalid value: "a": Duplicate predictor name',
        'spec.predictors[1].graph: Invalid value: "x": Can\'t find container for Predictive Unit',
        'spec: Invalid value: "a": Traffic must sum to 100 for multiple predictors',
    ]
    assert check(obj)[1] == FieldError("spec.predictors[1]", "a", "Duplicate predictor name")


def test_absent_and_null_fields_read_as_seldons_zero_values() -> None:
    accepted({"spec": {"predictors": [{"name": "m", "traffic": None, "shadow": None, "annotations": None,
                                       "graph": {"name": "m", "implementation": "SKLEARN_SERVER", "modelUri": "gs://m",
                                                 "children": None, "logger": None}}]}})


# ------------------------------------------------------------------------------------------------ AdmissionReview


def admission(operation: str, obj: dict[str, Any] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"uid": "8c3e", "operation": operation, "namespace": "models", "name": "iris",
                               "kind": {"group": "machinelearning.seldon.io", "version": "v1",
                                        "kind": "SeldonDeployment"}}
    if obj is not None:
        request["object"] = obj
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_review_allows_a_valid_object(operation: str) -> None:
    answer = review(admission(operation, sdep(custom())))
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "8c3e"
    assert answer["response"]["allowed"] is True


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_review_refuses_as_invalid_with_a_cause_per_problem(operation: str) -> None:
    answer = review(admission(operation, sdep(custom("a", 50), custom("a", 40))))
    response = answer["response"]
    assert response["uid"] == "8c3e" and response["allowed"] is False
    status = response["status"]
    assert (status["code"], status["reason"], status["status"]) == (422, "Invalid", "Failure")
    assert status["message"] == (
        'SeldonDeployment.machinelearning.seldon.io "iris" is invalid: [spec.predictors[1]: Invalid value: "a": '
        'Duplicate predictor name, spec: Invalid value: "a": Traffic must sum to 100 for multiple predictors]')
    assert status["details"] == {
        "name": "iris", "group": "machinelearning.seldon.io", "kind": "SeldonDeployment",
        "causes": [{"reason": "FieldValueInvalid", "field": "spec.predictors[1]",
                    "message": 'Invalid value: "a": Duplicate predictor name'},
                   {"reason": "FieldValueInvalid", "field": "spec",
                    "message": 'Invalid value: "a": Traffic must sum to 100 for multiple predictors'}]}


def test_review_names_the_spec_name_as_seldon_does() -> None:
    obj = sdep(custom("a", 50))
    del obj["spec"]["name"]
    status = review(admission("CREATE", obj))["response"]["status"]
    assert status["details"]["name"] == ""
    assert status["message"].startswith('SeldonDeployment.machinelearning.seldon.io "" is invalid: spec: ')


def test_review_allows_other_operations_and_refuses_a_request_without_object() -> None:
    assert review(admission("DELETE", None))["response"]["allowed"] is True
    missing = review(admission("CREATE", None))["response"]
    assert missing["allowed"] is False and missing["status"]["code"] == 400
    assert review({})["response"]["allowed"] is False
