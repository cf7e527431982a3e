"""The local cluster's SeldonDeployment CRD (localcluster/fixtures/) against the one Seldon Core v1.18.2 installs.

The reference (Seldon Core's own CRD and ten upstream SeldonDeployment manifests) is read at run time from
``shared/seldon-v1`` next to the repository root; when it is missing these tests fail, they never skip.

- the fixture applies to the real API server and is Established;
- every upstream manifest, and the repository's own example, is accepted in its own apiVersion and read
  back with every field it wrote (the server may only add, e.g. defaults);
- the fixture (hand-written, compact) covers the reference: every path the reference declares is declared
  with the same type, format and required fields, or lies inside one of the Kubernetes-native objects the
  fixture keeps whole (PRESERVED below); it declares nothing the reference lacks and no bound it lacks; the
  same versions, subresources and names; and the API server serves exactly that;
- the fields the previous fixture pruned (svcOrchSpec, explainer, ssl, logger, status.conditions...) survive;
- unknown fields are pruned at Seldon's own levels as on a real cluster, and kept inside the objects in
  PRESERVED (the documented deviation).
"""

from __future__ import annotations

import copy
import functools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import seldon_reference
from localcluster.seldon_reference import UPSTREAM_EXAMPLES
from testkit.kube import Kube
from testkit.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
REFERENCE = seldon_reference.reference_dir(REPO)  # shared/seldon-v1 beside the repository root
FIXTURE = seldon_reference.FIXTURE  # localcluster/fixtures/seldondeployment-crd.yaml
CRD = seldon_reference.CRD_NAME
GROUP = "machinelearning.seldon.io"
VERSIONS = ("v1", "v1alpha2", "v1alpha3")
# The local data plane serves every SeldonDeployment unless told not to; these manifests name images and
# gs:// models it cannot run, so each object created here carries this annotation (the only thing added).
NOT_SERVED = {"localcluster.modelrollout.dev/serve": "false"}

REPO_EXAMPLE = REPO / "examples" / "seldondeployment.yaml"
# Where the fixture keeps unknown fields instead of declaring what is inside (its top comment says why): the
# Kubernetes-native objects embedded in Seldon's types, and graph nodes from the fourth level of children down.
# Seldon Core's CRD spells these out, so a real cluster prunes an unknown field inside them; ours keeps it.
PREDICTOR = ".spec.predictors[]"
PRESERVED = (
    f"{PREDICTOR}.engineResources",                      # ResourceRequirements
    f"{PREDICTOR}.svcOrchSpec.env[]",                    # EnvVar
    f"{PREDICTOR}.svcOrchSpec.resources",                # ResourceRequirements
    f"{PREDICTOR}.componentSpecs[].metadata",            # ObjectMeta
    f"{PREDICTOR}.componentSpecs[].spec",                # PodSpec
    f"{PREDICTOR}.componentSpecs[].hpaSpec",             # HPA metrics
    f"{PREDICTOR}.componentSpecs[].kedaSpec",            # KEDA ScaledObject spec
    f"{PREDICTOR}.componentSpecs[].pdbSpec",             # PodDisruptionBudget spec
    f"{PREDICTOR}.explainer.containerSpec",              # Container
    f"{PREDICTOR}.graph" + ".children[]" * 4,            # graph nodes four levels down, and below
)
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
          "pattern", "enum", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
          "x-kubernetes-validations")


# ------------------------------------------------------------------------------------------------ helpers


def _missing(what: str) -> str:
    return (f"{what} is missing: these tests compare the local SeldonDeployment CRD with Seldon Core v1.18.2's "
            f"own CRD and upstream manifests, kept in {REFERENCE} (shared/seldon-v1 next to the repository "
            "root). Restore that directory; the tests cannot judge the fixture without it.")


@pytest.fixture(scope="module")
def reference_crd() -> dict[str, Any]:
    try:
        return seldon_reference.load_reference(REFERENCE)
    except seldon_reference.MissingReference as exc:
        pytest.fail(f"{exc}; these tests cannot judge the local SeldonDeployment CRD without it")


def example_path(name: str) -> Path:
    path = REFERENCE / "examples" / name
    if not path.is_file():
        pytest.fail(_missing(f"the upstream example {path}"))
    return path


def seldon_deployment_in(path: Path) -> dict[str, Any]:
    """The one SeldonDeployment a manifest holds (example 04 also holds a Namespace)."""
    docs = [json.loads(path.read_text())] if path.suffix == ".json" else list(yaml.safe_load_all(path.read_text()))
    found = [d for d in docs if isinstance(d, dict) and d.get("kind") == "SeldonDeployment"]
    assert len(found) == 1, f"{path.name}: expected one SeldonDeployment, found {len(found)}"
    return found[0]


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """What of ``expected`` is missing or changed in ``actual``; keys only ``actual`` has are allowed."""
    where = path or "."
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, the server has {actual!r}"]
        found: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f"{path}.{key}: missing (pruned); the file has {value!r}")
            else:
                found.extend(differences(value, actual[key], f"{path}.{key}"))
        return found
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: the file has {expected!r}, the server {actual!r}"]
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True))
                for d in differences(e, a, f"{path}[{i}]")]
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: the file has {expected!r}, the server {actual!r}"]
    return []


def minimal(name: str, version: str = "v1", **spec: Any) -> dict[str, Any]:
    """A SeldonDeployment Seldon Core itself would accept (its webhook too): one prepackaged-server predictor."""
    graph = {"name": "classifier", "implementation": "SKLEARN_SERVER", "modelUri": "gs://seldon-models/sklearn/iris"}
    return {"apiVersion": f"{GROUP}/{version}", "kind": "SeldonDeployment",
            "metadata": {"name": name, "annotations": dict(NOT_SERVED)},
            "spec": {**spec, "predictors": [{"name": "main", "graph": graph}]}}


def get_as(kube: Kube, version: str, name: str, namespace: str) -> dict[str, Any]:
    """The object read back through a given served version (resource.version.group)."""
    out = kube.run("get", f"seldondeployments.{version}.{GROUP}", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def create(kube: Kube, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
    out = kube.run("create", "-n", namespace, "-o", "json", "-f", "-", stdin=json.dumps(obj)).stdout
    return dict(json.loads(out))


schema_of = seldon_reference.schema_of
PRESERVE = seldon_reference.PRESERVE


def coverage_gaps(reference: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    """What keeps the candidate schema from covering the reference:

    - it keeps unknown fields anywhere but at the PRESERVED paths (elsewhere a real cluster prunes them);
    - a path the reference declares is neither declared by the candidate nor inside a node that keeps
      unknown fields (the API server would prune a field a real cluster keeps);
    - a path both declare differs in anything but keeping unknown fields at a PRESERVED path: type, format,
      required fields, defaults, x-kubernetes-* or a bound (minimum, pattern, enum...) the reference lacks;
    - the candidate declares a path the reference lacks, or a bound there, outside a node keeping unknown fields.
    """
    ref, cand = seldon_reference.schema_facets(reference), seldon_reference.schema_facets(candidate)
    found = [f"{path}: keeps unknown fields, where Seldon Core's CRD prunes them (not one of PRESERVED)"
             for path, facts in sorted(cand.items()) if facts.get(PRESERVE) and path not in PRESERVED]
    found.extend(f"{path}: does not keep unknown fields, though listed in PRESERVED"
                 for path in PRESERVED if not cand.get(path, {}).get(PRESERVE))
    for path, facts in ref.items():
        if path not in cand:
            if seldon_reference.preserving_ancestor(path, cand) is None:
                found.append(f"{path}: not declared, and no ancestor keeps unknown fields: the API server would "
                             f"prune it; the reference has {facts}")
            continue
        ours = {key: value for key, value in cand[path].items() if not (key == PRESERVE and path in PRESERVED)}
        for key in sorted(set(facts) | set(ours)):
            if facts.get(key) != ours.get(key):
                kind = "bound the reference lacks" if key in BOUNDS and key not in facts else "differs"
                found.append(f"{path}: {key} {kind}: reference {facts.get(key)!r}, fixture {ours.get(key)!r}")
    for path in sorted(set(cand) - set(ref)):
        if seldon_reference.preserving_ancestor(path, cand) is None:
            found.append(f"{path}: declared but not in the reference")
        found.extend(f"{path}: {key} is a bound the reference lacks: {cand[path][key]!r}"
                     for key in BOUNDS if key in cand[path])
    return found


def version_settings(crd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per version, everything but the schema, with the API server's defaults made explicit."""
    return {v["name"]: {"served": v["served"], "storage": v["storage"],
                        "subresources": v.get("subresources") or {},
                        "additionalPrinterColumns": v.get("additionalPrinterColumns") or [],
                        "deprecated": v.get("deprecated", False), "selectableFields": v.get("selectableFields") or []}
            for v in crd["spec"]["versions"]}


def names_of(crd: dict[str, Any]) -> dict[str, Any]:
    names = dict(crd["spec"]["names"])
    return {key: names.get(key) or ([] if key in ("shortNames", "categories") else None)
            for key in ("kind", "listKind", "plural", "singular", "shortNames", "categories")}


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def served_crd(cluster: Kube) -> dict[str, Any]:
    """Apply the fixture as the local cluster does, wait until it is Established and its schema is in
    effect in every version, and return the CRD as the API server serves it."""
    cluster.run("apply", "--server-side", "--force-conflicts", "-f", str(FIXTURE))
    cluster.run("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD}")
    def schema_in_effect(version: str) -> bool:
        obj = minimal("schema-probe", version)
        obj["spec"]["predictors"][0]["ssl"] = {"certSecretName": "probe-tls"}  # a field the old fixture pruned
        result = cluster.run("create", "--dry-run=server", "-n", "default", "-o", "json", "-f", "-",
                             stdin=json.dumps(obj), check=False)
        return result.returncode == 0 and "ssl" in json.loads(result.stdout)["spec"]["predictors"][0]

    for version in VERSIONS:
        wait_for(functools.partial(schema_in_effect, version), f"the {version} schema of {CRD} to be in effect",
                 timeout=30)
    return dict(json.loads(cluster.run("get", "crd", CRD, "-o", "json").stdout))


# ------------------------------------------------------------------------------------------------ 1. apply


def test_fixture_applies_and_is_established(served_crd: dict[str, Any]) -> None:
    conditions = {c["type"]: c["status"] for c in served_crd["status"]["conditions"]}
    assert conditions.get("Established") == "True", served_crd["status"]
    assert conditions.get("NamesAccepted") == "True", served_crd["status"]
    assert served_crd["status"]["acceptedNames"]["shortNames"] == ["sdep"]
    assert served_crd["status"]["storedVersions"] == ["v1"]


def test_fixture_is_labelled_as_a_stand_in_for_seldon_cores_crd() -> None:
    head = FIXTURE.read_text().split("\napiVersion:", 1)[0]
    assert head.startswith("# Stand-in for the SeldonDeployment CRD that Seldon Core v1 installs on a real cluster")
    assert "NOT part of modelrollout's API" in head
    # The deviation from Seldon Core's CRD is stated where the file starts: what it keeps instead of pruning.
    assert "x-kubernetes-preserve-unknown-fields" in head and "KEPT where the real CRD prunes it" in head


# ------------------------------------------------------------------------------------------------ 2. upstream manifests


def _kept_field_for_field(kube: Kube, namespace: str, source: dict[str, Any], label: str) -> None:
    obj = copy.deepcopy(source)
    metadata = obj["metadata"]
    metadata.pop("namespace", None)  # created in the test's fresh namespace instead
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **NOT_SERVED}
    version = obj["apiVersion"].split("/")[1]
    name = metadata["name"]

    created = create(kube, obj, namespace)
    assert created["apiVersion"] == source["apiVersion"]
    expected = {"spec": source["spec"],
                "metadata": {k: source["metadata"][k] for k in ("labels", "annotations") if k in source["metadata"]}}
    for read_as in dict.fromkeys((version, "v1")):  # its own version, then the one the operator reads
        stored = get_as(kube, read_as, name, namespace)
        assert stored["apiVersion"] == f"{GROUP}/{read_as}"
        found = differences(expected, {"spec": stored["spec"], "metadata": stored["metadata"]})
        assert not found, f"{label} read back as {read_as} lost or changed fields:\n" + "\n".join(found)


@pytest.mark.parametrize("name", UPSTREAM_EXAMPLES)
def test_upstream_example_is_accepted_and_kept_field_for_field(cluster: Kube, namespace: str,
                                                                served_crd: dict[str, Any], name: str) -> None:
    _kept_field_for_field(cluster, namespace, seldon_deployment_in(example_path(name)), name)


def test_upstream_examples_are_the_ten_expected() -> None:
    directory = REFERENCE / "examples"
    if not directory.is_dir():
        pytest.fail(_missing(f"the upstream examples directory {directory}"))
    present = sorted(p.name for p in directory.iterdir() if p.suffix in (".json", ".yaml", ".yml"))
    assert present == sorted(UPSTREAM_EXAMPLES)


def test_repository_example_is_accepted_and_kept_field_for_field(cluster: Kube, namespace: str,
                                                                 served_crd: dict[str, Any]) -> None:
    _kept_field_for_field(cluster, namespace, seldon_deployment_in(REPO_EXAMPLE), "examples/seldondeployment.yaml")


def test_placeholder_in_an_image_is_just_a_string(cluster: Kube, namespace: str, served_crd: dict[str, Any]) -> None:
    source = seldon_deployment_in(example_path("09-istio-canary-75-25.yaml"))
    obj = copy.deepcopy(source)
    obj["metadata"]["annotations"] = NOT_SERVED
    create(cluster, obj, namespace)
    stored = get_as(cluster, "v1alpha2", obj["metadata"]["name"], namespace)
    images = [container["image"] for predictor in stored["spec"]["predictors"]
              for component in predictor["componentSpecs"] for container in component["spec"]["containers"]]
    assert images == ["seldonio/mock_classifier:{VERSION}"] * 2


# ------------------------------------------------------------------------------------------------ 3. structure


@pytest.mark.parametrize("version", VERSIONS)
def test_fixture_schema_covers_the_reference(reference_crd: dict[str, Any], version: str) -> None:
    fixture = yaml.safe_load(FIXTURE.read_text())
    found = coverage_gaps(schema_of(reference_crd, version), schema_of(fixture, version))
    assert not found, f"{len(found)} gaps in {version}:\n" + "\n".join(found[:60])


@pytest.mark.parametrize("version", VERSIONS)
def test_served_schema_covers_the_reference(reference_crd: dict[str, Any],
                                            served_crd: dict[str, Any], version: str) -> None:
    """What the API server actually uses, not only what the file says."""
    found = coverage_gaps(schema_of(reference_crd, version), schema_of(served_crd, version))
    assert not found, f"{len(found)} gaps in {version}:\n" + "\n".join(found[:60])


def test_coverage_check_catches_what_a_fixture_could_get_wrong(reference_crd: dict[str, Any]) -> None:
    """The coverage check itself: each kind of drift from the reference is reported."""
    fixture = yaml.safe_load(FIXTURE.read_text())
    reference = schema_of(reference_crd, "v1")
    assert coverage_gaps(reference, schema_of(fixture, "v1")) == []

    def gaps_after(change: Any) -> list[str]:
        schema = copy.deepcopy(schema_of(fixture, "v1"))
        predictor = schema["properties"]["spec"]["properties"]["predictors"]["items"]
        change(predictor)
        return coverage_gaps(reference, schema)

    def bound(p: dict[str, Any]) -> None:
        p["properties"]["traffic"].update(minimum=0, maximum=100)

    def dropped(p: dict[str, Any]) -> None:
        del p["properties"]["ssl"]

    def extra(p: dict[str, Any]) -> None:
        p["properties"]["weight"] = {"type": "integer"}

    def kept(p: dict[str, Any]) -> None:
        p[PRESERVE] = True

    def required(p: dict[str, Any]) -> None:
        p["required"] = ["name"]

    def retyped(p: dict[str, Any]) -> None:
        p["properties"]["replicas"] = {"type": "integer", "format": "int64"}

    assert any("traffic: maximum bound the reference lacks" in g for g in gaps_after(bound))
    assert any(g.startswith(f"{PREDICTOR}.ssl: not declared") for g in gaps_after(dropped))
    assert f"{PREDICTOR}.weight: declared but not in the reference" in gaps_after(extra)
    assert any(g.startswith(f"{PREDICTOR}: keeps unknown fields") for g in gaps_after(kept))
    assert any(g.startswith(f"{PREDICTOR}: required differs") for g in gaps_after(required))
    assert any(g.startswith(f"{PREDICTOR}.replicas: format differs") for g in gaps_after(retyped))


def test_versions_subresources_and_names_match_the_reference(reference_crd: dict[str, Any],
                                                             served_crd: dict[str, Any]) -> None:
    fixture = yaml.safe_load(FIXTURE.read_text())
    for crd in (fixture, served_crd):
        assert version_settings(crd) == version_settings(reference_crd)
        assert names_of(crd) == names_of(reference_crd)
        for key in ("group", "scope"):
            assert crd["spec"][key] == reference_crd["spec"][key]
        assert (crd["spec"].get("conversion") or {"strategy": "None"}) == \
            (reference_crd["spec"].get("conversion") or {"strategy": "None"})
    settings = version_settings(served_crd)
    assert [v for v, s in settings.items() if s["served"]] == list(VERSIONS)
    assert [v for v, s in settings.items() if s["storage"]] == ["v1"]
    assert served_crd["spec"]["conversion"] == {"strategy": "None"}
    for version in VERSIONS:
        assert settings[version]["subresources"] == {
            "status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}}
    assert names_of(served_crd)["shortNames"] == ["sdep"]


def test_fields_the_operator_and_data_plane_use_keep_their_meaning() -> None:
    facets = seldon_reference.schema_facets(schema_of(yaml.safe_load(FIXTURE.read_text()), "v1"))
    predictor = PREDICTOR
    expected = {
        ".status.state": "string", ".status.description": "string", ".status.replicas": "integer",
        ".status.address.url": "string", ".spec.replicas": "integer", f"{predictor}.name": "string",
        f"{predictor}.traffic": "integer", f"{predictor}.shadow": "boolean", f"{predictor}.replicas": "integer",
        f"{predictor}.annotations": "object", f"{predictor}.annotations{{}}": "string",
        f"{predictor}.componentSpecs": "array", f"{predictor}.componentSpecs[].replicas": "integer",
        f"{predictor}.componentSpecs[].spec": "object", f"{predictor}.graph": "object",
        f"{predictor}.graph.name": "string", f"{predictor}.graph.type": "string",
        f"{predictor}.graph.implementation": "string", f"{predictor}.graph.modelUri": "string",
        f"{predictor}.graph.children": "array", f"{predictor}.graph.children[].modelUri": "string",
    }
    assert {path: facets.get(path, {}).get("type") for path in expected} == expected
    for path in (f"{predictor}.traffic", f"{predictor}.replicas"):
        assert not set(facets[path]) & set(BOUNDS), f"{path} has bounds Seldon Core's CRD does not: {facets[path]}"
    # Containers (their images included) are kept as written, inside the pod spec that keeps unknown fields.
    image = f"{predictor}.componentSpecs[].spec.containers[].image"
    assert seldon_reference.preserving_ancestor(image, facets) == f"{predictor}.componentSpecs[].spec"


# ------------------------------------------------------------------------------------------------ 4. round trip


def test_fields_the_old_fixture_pruned_survive_a_round_trip(cluster: Kube, namespace: str,
                                                            served_crd: dict[str, Any]) -> None:
    name = f"kept-{uuid.uuid4().hex[:6]}"
    spec = {
        "name": name, "protocol": "seldon", "serverType": "rpc", "replicas": 1,
        "predictors": [{
            "name": "main", "traffic": 100, "replicas": 1, "progressDeadlineSeconds": 120,
            "ssl": {"certSecretName": "main-tls"},
            "svcOrchSpec": {"env": [{"name": "SELDON_LOG_LEVEL", "value": "DEBUG"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}, "replicas": 1},
            "explainer": {"type": "AnchorTabular", "modelUri": "gs://seldon-models/explainer", "replicas": 1,
                          "storageInitializerImage": "seldonio/rclone-storage-initializer:1.18.2",
                          "containerSpec": {"name": "explainer", "image": "seldonio/alibiexplainer:1.18.2"}},
            "componentSpecs": [{
                "spec": {"containers": [{"name": "classifier", "image": "seldonio/sklearnserver:1.18.2"}]},
                "kedaSpec": {"pollingInterval": 15, "minReplicaCount": 1, "maxReplicaCount": 3,
                             "triggers": [{"type": "prometheus", "metadata": {"threshold": "10"}}]},
                "pdbSpec": {"minAvailable": 1},
            }],
            "graph": {"name": "classifier", "type": "MODEL", "implementation": "SKLEARN_SERVER",
                      "modelUri": "gs://seldon-models/sklearn/iris",
                      "storageInitializerImage": "seldonio/rclone-storage-initializer:1.18.2",
                      "methods": ["predict", "send-feedback"],
                      "logger": {"mode": "all", "url": "http://logger.seldon-system"},
                      "children": []},
        }],
    }
    obj = {"apiVersion": f"{GROUP}/v1", "kind": "SeldonDeployment",
           "metadata": {"name": name, "annotations": NOT_SERVED}, "spec": spec}
    create(cluster, obj, namespace)
    status = {"state": "Available", "description": "", "replicas": 1, "observedGeneration": 1,
              "address": {"url": f"http://ingress/seldon/{namespace}/{name}/api/v1.0/predictions"},
              "annotations": {"example.com/note": "kept"},
              "conditions": [{"type": "Ready", "status": "True", "reason": "DeploymentsReady",
                              "lastTransitionTime": "2024-01-01T00:00:00Z", "severity": "Info",
                              "message": "all components ready"}],
              "deploymentStatus": {f"{name}-main-0-classifier": {"name": f"{name}-main-0-classifier",
                                                                 "status": "Available", "replicas": 1,
                                                                 "availableReplicas": 1}},
              "serviceStatus": {f"{name}-main": {"svcName": f"{name}-main", "httpEndpoint": "x:8000"}}}
    cluster.run("patch", "sdep", name, "-n", namespace, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}))

    for version in VERSIONS:
        stored = get_as(cluster, version, name, namespace)
        found = differences({"spec": spec, "status": status}, {"spec": stored["spec"], "status": stored["status"]})
        assert not found, f"read back as {version}:\n" + "\n".join(found)


UNKNOWN = {"notAField": 1}


def _node(name: str, **fields: Any) -> dict[str, Any]:
    """A graph node Seldon's webhook accepts anywhere in a graph: a prepackaged server with its model."""
    return {"name": name, "implementation": "SKLEARN_SERVER", "modelUri": f"gs://seldon-models/{name}", **fields}


def _without(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without(v, key) for v in value]
    return value


def _create_pruning_only(kube: Kube, obj: dict[str, Any], namespace: str) -> None:
    # kubectl validates strictly by default (unknown fields are errors): ask the server only to prune.
    kube.run("create", "--validate=false", "-n", namespace, "-o", "json", "-f", "-", stdin=json.dumps(obj))


def test_unknown_fields_are_pruned_where_seldon_cores_crd_prunes_them(cluster: Kube, namespace: str,
                                                                      served_crd: dict[str, Any]) -> None:
    """At Seldon's own levels an unknown field is pruned, as on a real cluster: the spec, a predictor, its ssl,
    svcOrchSpec, explainer and component specs, every declared level of the graph (endpoint, logger and
    parameters included) and the status."""
    graph = _node("a", endpoint={"type": "REST", **UNKNOWN}, logger={"mode": "all", **UNKNOWN},
                  parameters=[{"name": "p", "type": "INT", "value": "1", **UNKNOWN}],
                  children=[_node("b", children=[_node("c", children=[_node("d", **UNKNOWN)], **UNKNOWN)],
                                  **UNKNOWN)], **UNKNOWN)
    predictor = {"name": "main", "ssl": {"certSecretName": "main-tls", **UNKNOWN},
                 "svcOrchSpec": {"replicas": 1, **UNKNOWN},
                 "explainer": {"type": "AnchorTabular", "modelUri": "gs://seldon-models/explainer",
                               "endpoint": {"type": "REST", **UNKNOWN}, **UNKNOWN},
                 "componentSpecs": [{"replicas": 1, "spec": {"containers": [{"name": "a"}]}, **UNKNOWN}],
                 "graph": graph, **UNKNOWN}
    spec = {"name": "pruned", "predictors": [predictor], **UNKNOWN}
    obj = {"apiVersion": f"{GROUP}/v1", "kind": "SeldonDeployment",
           "metadata": {"name": "pruned", "annotations": NOT_SERVED}, "spec": spec}
    _create_pruning_only(cluster, obj, namespace)
    status = {"state": "Available", "address": {"url": "http://x", **UNKNOWN},
              "conditions": [{"type": "Ready", "status": "True", **UNKNOWN}],
              "deploymentStatus": {"d": {"name": "d", **UNKNOWN}}, "serviceStatus": {"s": {"svcName": "s", **UNKNOWN}},
              **UNKNOWN}
    cluster.run("patch", "sdep", "pruned", "-n", namespace, "--subresource=status", "--type=merge",
                "-p", json.dumps({"status": status}))

    for version in VERSIONS:
        stored = get_as(cluster, version, "pruned", namespace)
        kept = {"spec": stored["spec"], "status": stored["status"]}
        assert "notAField" not in json.dumps(kept), f"read back as {version}: {kept}"
        found = differences(_without({"spec": spec, "status": status}, "notAField"), kept)
        assert not found, f"read back as {version}:\n" + "\n".join(found)


def test_unknown_fields_inside_kubernetes_native_objects_are_kept(cluster: Kube, namespace: str,
                                                                  served_crd: dict[str, Any]) -> None:
    """The documented deviation (the fixture's top comment): inside the objects in PRESERVED (pod spec and
    containers, object metadata, resources, env vars, HPA/KEDA/PDB specs, the explainer's container, graph
    nodes from the fourth level of children down) an unknown field is kept, where a real cluster prunes it."""
    deep = _node("e", children=[_node("f", **UNKNOWN)], **UNKNOWN)  # levels 4 and 5 of children
    graph = _node("a", children=[_node("b", children=[_node("c", children=[_node("d", children=[deep])])])])
    predictor = {
        "name": "main", "graph": graph,
        "engineResources": {"requests": {"cpu": "100m"}, **UNKNOWN},
        "svcOrchSpec": {"env": [{"name": "SELDON_LOG_LEVEL", "value": "DEBUG", **UNKNOWN}],
                        "resources": {"limits": {"memory": "1Gi"}, **UNKNOWN}},
        "explainer": {"type": "AnchorTabular", "modelUri": "gs://seldon-models/explainer",
                      "containerSpec": {"name": "explainer", **UNKNOWN}},
        "componentSpecs": [{"metadata": {"labels": {"tier": "model"}, **UNKNOWN},
                            "spec": {"containers": [{"name": "a", **UNKNOWN}], **UNKNOWN},
                            "hpaSpec": {"maxReplicas": 2, **UNKNOWN},
                            "kedaSpec": {"triggers": [{"type": "prometheus", **UNKNOWN}], **UNKNOWN},
                            "pdbSpec": {"minAvailable": 1, **UNKNOWN}}],
    }
    spec = {"predictors": [predictor]}
    obj = {"apiVersion": f"{GROUP}/v1", "kind": "SeldonDeployment",
           "metadata": {"name": "kept-unknown", "annotations": NOT_SERVED}, "spec": spec}
    _create_pruning_only(cluster, obj, namespace)
    stored = get_as(cluster, "v1", "kept-unknown", namespace)["spec"]
    found = differences(spec, stored)
    assert not found, "\n".join(found)
    assert json.dumps(stored).count("notAField") == json.dumps(spec).count("notAField") > 0


def test_scale_subresource_reads_and_writes_spec_replicas(cluster: Kube, namespace: str,
                                                          served_crd: dict[str, Any]) -> None:
    create(cluster, minimal("scaled", replicas=1), namespace)
    cluster.run("scale", "sdep/scaled", "-n", namespace, "--replicas=3")
    assert get_as(cluster, "v1", "scaled", namespace)["spec"]["replicas"] == 3
    scale = json.loads(cluster.run(
        "get", "--raw", f"/apis/{GROUP}/v1/namespaces/{namespace}/seldondeployments/scaled/scale").stdout)
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 3


def test_required_fields_are_enforced_as_seldon_cores_crd_does(cluster: Kube, namespace: str,
                                                               served_crd: dict[str, Any]) -> None:
    """Each required field of Seldon's types, and at the top of the Kubernetes-native objects, is required."""
    def without(field: str, change: Any) -> dict[str, Any]:
        obj = minimal("no-" + field.rsplit(".", 1)[-1].lower())
        change(obj["spec"]["predictors"][0])
        return obj

    cases: dict[str, dict[str, Any]] = {
        "spec.predictors": {"apiVersion": f"{GROUP}/v1", "kind": "SeldonDeployment",
                            "metadata": {"name": "no-predictors"}, "spec": {"name": "x"}},
        "spec.predictors[0].name": without("name", lambda p: p.pop("name")),
        "spec.predictors[0].graph": without("graph", lambda p: p.pop("graph")),
        "spec.predictors[0].graph.name": without("graph-name", lambda p: p["graph"].pop("name")),
        "spec.predictors[0].graph.children[0].name": without(
            "child-name", lambda p: p["graph"].update(children=[{"implementation": "SKLEARN_SERVER"}])),
        "spec.predictors[0].graph.parameters[0].value": without(
            "value", lambda p: p["graph"].update(parameters=[{"name": "p", "type": "INT"}])),
        "spec.predictors[0].componentSpecs[0].spec.containers": without(
            "containers", lambda p: p.update(componentSpecs=[{"spec": {}}])),
        "spec.predictors[0].explainer.containerSpec.name": without(
            "container-name", lambda p: p.update(explainer={"type": "AnchorTabular", "containerSpec": {}})),
    }
    for field, obj in cases.items():
        result = cluster.run("create", "-n", namespace, "-f", "-", stdin=json.dumps(obj), check=False)
        assert result.returncode != 0, f"created without {field}"
        assert f"{field}: Required value" in result.stderr, result.stderr

    create(cluster, minimal("status-required"), namespace)
    result = cluster.run("patch", "sdep", "status-required", "-n", namespace, "--subresource=status",
                         "--type=merge", "-p", json.dumps({"status": {"conditions": [{"status": "True"}]}}),
                         check=False)
    assert result.returncode != 0
    assert "status.conditions[0].type: Required value" in result.stderr, result.stderr
