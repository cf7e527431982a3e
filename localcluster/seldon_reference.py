"""Read-only access to the SeldonDeployment CRD that Seldon Core v1 installs, for the tests.

``localcluster/fixtures/seldondeployment-crd.yaml`` is our own, hand-written stand-in for the CRD Seldon Core's
chart installs on a real cluster. Seldon Core v1.18.2's CRD itself is kept outside the repository, at
``../shared/seldon-v1/seldon-crd.yaml`` relative to the repository root (with upstream example manifests in
``examples/``), and is only read, at run time, by tests/integration/test_seldon_crd.py to judge the fixture.
Nothing here writes the fixture.

``schema_facets`` flattens a schema into "property path -> what the schema says there", the form in which the
tests compare the reference, the fixture and the CRD the API server serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "localcluster" / "fixtures" / "seldondeployment-crd.yaml"
CRD_NAME = "seldondeployments.machinelearning.seldon.io"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
# The ten real upstream SeldonDeployments kept beside the reference CRD (see its SOURCES.md).
UPSTREAM_EXAMPLES = (
    "01-canary-two-predictors-componentspecs.json",
    "02-ab-50-50-multi-container-graph.yaml",
    "03-ab-mlflow-80-20.yaml",
    "04-iter8-baseline-candidate-sklearn-xgboost.yaml",
    "05-iter8-promoted-single-sklearn.yaml",
    "06-shadow-sklearn.yaml",
    "07-combiner-prepack-containers-without-image.yaml",
    "08-protocol-v2-nested-sklearn.yaml",
    "09-istio-canary-75-25.yaml",
    "10-istio-shadow-traffic-100.yaml",
)

# Keywords whose value is a schema or a list of schemas; every other keyword is a fact about its node.
_SUBSCHEMA_MAPS = ("properties",)
_SUBSCHEMAS = {"items": "[]", "additionalProperties": "{}", "not": "(not)"}
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


class MissingReference(RuntimeError):
    pass


def reference_dir(repo: Path = REPO) -> Path:
    """Where Seldon Core's CRD and upstream example manifests are kept: ``shared/seldon-v1`` beside the repo."""
    return repo.parent / "shared" / "seldon-v1"


def load_reference(directory: Path | None = None) -> dict[str, Any]:
    """Seldon Core's own SeldonDeployment CRD; MissingReference (with where it was looked for) when absent."""
    path = (directory or reference_dir()) / "seldon-crd.yaml"
    if not path.is_file():
        raise MissingReference(
            f"the reference SeldonDeployment CRD of Seldon Core v1.18.2 is missing: expected {path} "
            "(the directory shared/seldon-v1 next to the repository root, with seldon-crd.yaml and examples/)")
    crd = yaml.safe_load(path.read_text())
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition" \
            or crd.get("metadata", {}).get("name") != CRD_NAME:
        raise MissingReference(f"{path} is not the {CRD_NAME} CustomResourceDefinition")
    return crd


def schema_of(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The openAPIV3Schema a CRD declares for one version."""
    [entry] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return dict(entry["schema"]["openAPIV3Schema"])


def _without_descriptions(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in _SUBSCHEMA_MAPS:
            out[key] = {name: _without_descriptions(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMAS and isinstance(value, dict):
            out[key] = _without_descriptions(value)
        elif key in _SUBSCHEMA_LISTS:
            out[key] = [_without_descriptions(sub) for sub in value]
        else:
            out[key] = value
    return out


def schema_facets(schema: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    """Every node of the schema by its path (``.spec.predictors[].graph``, ``[]`` for array items, ``{}`` for
    map values, ``.`` for the root), with what the schema says at that node: type, format, required (sorted),
    bounds, defaults, x-kubernetes-* (descriptions aside). A path that is neither in the result nor below a
    node preserving unknown fields is a field the API server prunes."""
    facets: dict[str, dict[str, Any]] = {}
    here: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in _SUBSCHEMA_MAPS:
            for name, sub in value.items():
                facets.update(schema_facets(sub, f"{path}.{name}"))
        elif key in _SUBSCHEMAS and isinstance(value, dict):
            facets.update(schema_facets(value, path + _SUBSCHEMAS[key]))
        elif key in _SUBSCHEMA_LISTS:
            here[key] = [_without_descriptions(sub) for sub in value]
        elif key == "required":
            here[key] = sorted(value)
        else:
            here[key] = value
    facets[path or "."] = here
    return facets


def preserving_ancestor(path: str, facets: dict[str, dict[str, Any]]) -> str | None:
    """The nearest strict ancestor of ``path`` whose node keeps unknown fields, if any: everything below it is
    kept as written, whether or not the schema declares it."""
    for end in range(len(path) - 1, 0, -1):
        if path[end] in ".[{" and facets.get(path[:end], {}).get(PRESERVE):
            return path[:end]
    return None
