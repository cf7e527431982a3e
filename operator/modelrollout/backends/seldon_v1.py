"""Seldon Core v1 traffic backend: predictors of a SeldonDeployment and their ``traffic`` shares.

Candidate = a copy of the stable predictor with the candidate's model URI and its own name.
Promotion = the stable predictor takes the candidate's model with the whole pool, the candidate goes.
Rollback = the candidate goes, the stable predictor takes the whole pool.

The "pool" is the traffic the stable and candidate predictors share: predictors this rollout does not
own keep their share untouched, so the weights of all live predictors still sum to 100.

Every write is a read-modify-replace guarded by ``resourceVersion``: a concurrent edit by someone else
makes the API server answer 409, and we re-read and re-apply on top of it instead of overwriting it.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from ..api import SELDON_GROUP, SELDON_PLURAL, SELDON_VERSION, RolloutSpec
from ..engine import TargetObservation, TrafficChange

VERSION_ANNOTATION = "modelrollout.dev/version"
MANAGED_BY_ANNOTATION = "modelrollout.dev/candidate-of"
WEIGHT_ANNOTATION = "modelrollout.dev/weight"
CONFLICT_RETRIES = 8

Predictor = dict[str, Any]


# ------------------------------------------------------------------ pure transformations


def _graph_nodes(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in node.get("children") or ():
        yield from _graph_nodes(child)


def model_node(predictor: Mapping[str, Any]) -> dict[str, Any]:
    """The graph node that holds the model: the root if it has a modelUri, else the first node that does."""
    graph = predictor.get("graph") or {}
    for node in _graph_nodes(graph):
        if node.get("modelUri"):
            return node  # type: ignore[return-value]
    return graph  # type: ignore[return-value]


def predictor_version(predictor: Mapping[str, Any]) -> str:
    """The version label we wrote, else the model URI's last path segment (…/digits/1.0.0 → 1.0.0)."""
    annotated = (predictor.get("annotations") or {}).get(VERSION_ANNOTATION)
    if annotated:
        return str(annotated)
    uri = str(model_node(predictor).get("modelUri") or "")
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else ""


def _find(predictors: list[Predictor], name: str) -> Predictor | None:
    return next((p for p in predictors if p.get("name") == name), None)


def observe_deployment(sdep: Mapping[str, Any] | None, spec: RolloutSpec) -> TargetObservation:
    ref = f"SeldonDeployment {spec.target.name}"
    if sdep is None:
        return TargetObservation(exists=False, error=f"{ref} not found")
    predictors = list((sdep.get("spec") or {}).get("predictors") or [])
    stable = _find(predictors, spec.stable_predictor)
    if stable is None:
        names = ", ".join(str(p.get("name")) for p in predictors) or "none"
        return TargetObservation(exists=True, error=f"stable predictor {spec.stable_predictor!r} not found in "
                                                    f"{ref} (predictors: {names})")
    candidate = _find(predictors, spec.candidate.predictor_name)
    pool = _pool(predictors, {spec.stable_predictor, spec.candidate.predictor_name})
    reported = sdep.get("status") or {}
    return TargetObservation(
        exists=True,
        stable_present=True,
        stable_model_uri=str(model_node(stable).get("modelUri") or ""),
        stable_version=predictor_version(stable),
        candidate_present=candidate is not None,
        candidate_weight=_weight_of(candidate, pool),
        candidate_model_uri=str(model_node(candidate).get("modelUri") or "") if candidate else "",
        state=str(reported.get("state") or ""),
        state_message=str(reported.get("description") or ""),
    )


def _pool(predictors: list[Predictor], owned: set[str]) -> int:
    """Traffic left for the stable and candidate predictors once the others keep theirs."""
    others = sum(int(p.get("traffic") or 0) for p in predictors if p.get("name") not in owned and not p.get("shadow"))
    return max(0, 100 - others)


def _share_of(weight: int, pool: int) -> int:
    return round(weight * pool / 100)


def _weight_of(candidate: Mapping[str, Any] | None, pool: int) -> int:
    """The candidate's weight as a percent of the pool.

    Several weights can round to the same share of a pool under 100, so the weight we set is kept in an
    annotation and believed as long as the share still matches it (nobody changed traffic by hand).
    """
    if candidate is None or pool <= 0:
        return 0
    share = int(candidate.get("traffic") or 0)
    recorded = (candidate.get("annotations") or {}).get(WEIGHT_ANNOTATION)
    if recorded is not None and str(recorded).isdigit() and _share_of(int(recorded), pool) == share:
        return int(recorded)
    return min(100, round(share * 100 / pool))


def _candidate_from(stable: Predictor, spec: RolloutSpec) -> Predictor:
    candidate = copy.deepcopy(stable)
    candidate["name"] = spec.candidate.predictor_name
    candidate.pop("shadow", None)
    model_node(candidate)["modelUri"] = spec.candidate.model_uri
    annotations = dict(candidate.get("annotations") or {})
    annotations[VERSION_ANNOTATION] = spec.candidate.version
    annotations[MANAGED_BY_ANNOTATION] = spec.stable_predictor
    candidate["annotations"] = annotations
    # Component specs name containers after graph nodes; the copy keeps them, so the same image serves.
    return candidate


def desired_predictors(predictors: list[Predictor], spec: RolloutSpec, change: TrafficChange) -> list[Predictor]:
    """The predictors list after the change; raises LookupError when the stable predictor is missing."""
    result = copy.deepcopy(predictors)
    stable = _find(result, spec.stable_predictor)
    if stable is None:
        raise LookupError(f"stable predictor {spec.stable_predictor!r} not found")
    owned = {spec.stable_predictor, spec.candidate.predictor_name}
    pool = _pool(result, owned)
    candidate = _find(result, spec.candidate.predictor_name)

    if change.kind == "weight":
        if candidate is None:
            candidate = _candidate_from(stable, spec)
            result.insert(result.index(stable) + 1, candidate)
        else:  # keep the candidate's model in line with the spec, in case someone edited it
            model_node(candidate)["modelUri"] = spec.candidate.model_uri
        share = _share_of(change.candidate_weight, pool)
        candidate["traffic"] = share
        annotations = candidate.get("annotations") or {}
        candidate["annotations"] = {**annotations, WEIGHT_ANNOTATION: str(change.candidate_weight)}
        stable["traffic"] = pool - share
        return result

    if change.kind == "promote":
        model_node(stable)["modelUri"] = spec.candidate.model_uri
        stable["annotations"] = {**(stable.get("annotations") or {}), VERSION_ANNOTATION: spec.candidate.version}
    result = [p for p in result if p.get("name") != spec.candidate.predictor_name]
    stable = _find(result, spec.stable_predictor)
    assert stable is not None
    stable["traffic"] = pool
    return result


# ------------------------------------------------------------------ the backend


class SeldonV1Backend:
    def __init__(self, api_client: ApiClient) -> None:
        self._api = CustomObjectsApi(api_client)

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self._api.get_namespaced_custom_object(SELDON_GROUP, SELDON_VERSION, namespace, SELDON_PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(obj)  # type: ignore[call-overload,no-any-return]

    async def observe(self, namespace: str, spec: RolloutSpec) -> TargetObservation:
        sdep = await asyncio.to_thread(self._get, namespace, spec.target.name)
        return observe_deployment(sdep, spec)

    def _apply_sync(self, namespace: str, spec: RolloutSpec, change: TrafficChange) -> bool:
        for _ in range(CONFLICT_RETRIES):
            sdep = self._get(namespace, spec.target.name)
            if sdep is None:
                raise LookupError(f"SeldonDeployment {namespace}/{spec.target.name} not found")
            predictors = list(sdep.get("spec", {}).get("predictors") or [])
            desired = desired_predictors(predictors, spec, change)
            if desired == predictors:
                return False
            sdep["spec"]["predictors"] = desired  # metadata.resourceVersion from the read guards the write
            try:
                self._api.replace_namespaced_custom_object(
                    SELDON_GROUP, SELDON_VERSION, namespace, SELDON_PLURAL, spec.target.name, sdep)
                return True
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError(f"SeldonDeployment {namespace}/{spec.target.name} kept changing under us: "
                           f"{CONFLICT_RETRIES} conflicting writes in a row")

    async def apply(self, namespace: str, spec: RolloutSpec, change: TrafficChange) -> bool:
        return await asyncio.to_thread(self._apply_sync, namespace, spec, change)
