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
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from ..api import SELDON_GROUP, SELDON_PLURAL, SELDON_VERSION
from ..traffic import (
    ForeignPredictorError,
    Readiness,
    TargetObservation,
    TrafficChange,
    TrafficRefused,
    TrafficTarget,
    share_of,
)

VERSION_ANNOTATION = "modelrollout.dev/version"
MANAGED_BY_ANNOTATION = "modelrollout.dev/candidate-of"  # the stable predictor a candidate was copied from
OWNER_UID_ANNOTATION = "modelrollout.dev/owner-uid"  # the ModelRollout that created the candidate
OWNER_ANNOTATION = "modelrollout.dev/owner"  # its namespace/name, for people
SELDON_VERSION_ANNOTATION = "version"  # Seldon's executor reports it as predictor_version
SVC_NAME_ANNOTATION = "seldon.io/svc-name"  # unique per predictor: Seldon's webhook refuses a copy of it
CONFLICT_RETRIES = 8
REQUEST_TIMEOUT_S = 10.0

Predictor = dict[str, Any]


# ------------------------------------------------------------------ pure transformations


def _graph_nodes(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in node.get("children") or ():
        yield from _graph_nodes(child)


_NOT_A_MODEL = {"ROUTER", "COMBINER", "TRANSFORMER", "OUTPUT_TRANSFORMER"}


def find_model_node(predictor: Mapping[str, Any], name: str = "") -> tuple[dict[str, Any] | None, str]:
    """The graph node that holds the model, or None and why.

    With ``name``, the node of that name. Otherwise the one node of type MODEL (or of no type: Seldon's
    prepackaged servers are models) that has a modelUri; a transformer or router in front of it is never
    the model, and several candidates need ``spec.candidate.node`` to say which.
    """
    nodes = list(_graph_nodes(predictor.get("graph") or {}))
    if name:
        named = [n for n in nodes if n.get("name") == name]
        if named:
            return named[0], ""  # type: ignore[return-value]
        return None, f"graph node {name!r} (spec.candidate.node) not found in predictor {predictor.get('name')!r}"
    models = [n for n in nodes if n.get("modelUri") and str(n.get("type") or "MODEL").upper() not in _NOT_A_MODEL]
    if len(models) == 1:
        return models[0], ""  # type: ignore[return-value]
    if not models:
        return None, (f"predictor {predictor.get('name')!r} has no graph node of type MODEL with a modelUri; "
                      "set spec.candidate.node")
    names = ", ".join(str(n.get("name")) for n in models)
    return None, f"predictor {predictor.get('name')!r} has several model nodes ({names}); set spec.candidate.node"


def model_node(predictor: Mapping[str, Any], name: str = "") -> dict[str, Any]:
    node, problem = find_model_node(predictor, name)
    if node is None:
        raise LookupError(problem)
    return node


def _model_uri(predictor: Mapping[str, Any] | None, name: str = "") -> str:
    if predictor is None:
        return ""
    node, _ = find_model_node(predictor, name)
    return str(node.get("modelUri") or "") if node else ""


def predictor_version(predictor: Mapping[str, Any], node: str = "") -> str:
    """Seldon's ``version`` annotation (the executor's predictor_version label), else the model URI's last
    path segment (…/digits/1.0.0 → 1.0.0)."""
    annotations = predictor.get("annotations") or {}
    annotated = annotations.get(SELDON_VERSION_ANNOTATION) or annotations.get(VERSION_ANNOTATION)
    if annotated:
        return str(annotated)
    uri = _model_uri(predictor, node)
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else ""


def _find(predictors: list[Predictor], name: str) -> Predictor | None:
    return next((p for p in predictors if p.get("name") == name), None)


def _annotations(predictor: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (predictor or {}).get("annotations") or {}


def owned_by(predictor: Mapping[str, Any] | None, uid: str) -> bool:
    return predictor is not None and bool(uid) and _annotations(predictor).get(OWNER_UID_ANNOTATION) == uid


def _foreign_owner(predictors: list[Predictor], target: TrafficTarget) -> str:
    """The owner of another rollout's candidate copied from the same stable predictor ("" if none)."""
    for predictor in predictors:
        annotations = _annotations(predictor)
        uid = annotations.get(OWNER_UID_ANNOTATION)
        if uid and uid != target.owner_uid and annotations.get(MANAGED_BY_ANNOTATION) == target.stable_predictor:
            return str(annotations.get(OWNER_ANNOTATION) or f"uid {uid}")
    return ""


def observe_deployment(sdep: Mapping[str, Any] | None, target: TrafficTarget) -> TargetObservation:
    ref = f"SeldonDeployment {target.name}"
    if sdep is None:
        return TargetObservation(exists=False, error=f"{ref} not found")
    predictors = list((sdep.get("spec") or {}).get("predictors") or [])
    stable = _find(predictors, target.stable_predictor)
    if stable is None:
        names = ", ".join(str(p.get("name")) for p in predictors) or "none"
        return TargetObservation(exists=True, error=f"stable predictor {target.stable_predictor!r} not found in "
                                                    f"{ref} (predictors: {names})")
    _, problem = find_model_node(stable, target.node)
    if problem:
        return TargetObservation(exists=True, error=problem)
    candidate = _find(predictors, target.candidate_predictor)
    pool = _pool(predictors, {target.stable_predictor, target.candidate_predictor})
    reported = sdep.get("status") or {}
    return TargetObservation(
        exists=True,
        stable_present=True,
        stable_model_uri=_model_uri(stable, target.node),
        stable_version=predictor_version(stable, target.node),
        candidate_present=candidate is not None,
        candidate_weight=0 if _is_shadow(candidate) else _weight_of(candidate, pool),
        candidate_mirror=_mirror_of(candidate),
        pool=pool,
        candidate_model_uri=_model_uri(candidate, target.node),
        candidate_owned=candidate is None or owned_by(candidate, target.owner_uid),
        foreign_owner=_foreign_owner(predictors, target),
        readiness=readiness_of(reported),
        readiness_detail=readiness_detail(reported),
    )


def readiness_of(reported: Mapping[str, Any]) -> Readiness:
    """Seldon v1's status.state in the engine's terms: Creating while some predictor has no ready
    server, Failed once a predictor passed its progress deadline; anything else (Available, none yet)
    does not say it cannot serve."""
    state = str(reported.get("state") or "")
    return {"Creating": Readiness.PENDING, "Failed": Readiness.FAILED}.get(state, Readiness.SERVING)


def readiness_detail(reported: Mapping[str, Any]) -> str:
    state, description = str(reported.get("state") or ""), str(reported.get("description") or "")
    return f"{state}: {description}" if state and description else state or description


def _pool(predictors: list[Predictor], owned: set[str]) -> int:
    """Traffic left for the stable and candidate predictors once the others keep theirs."""
    others = sum(int(p.get("traffic") or 0) for p in predictors if p.get("name") not in owned and not p.get("shadow"))
    return max(0, 100 - others)


def _is_shadow(predictor: Mapping[str, Any] | None) -> bool:
    return predictor is not None and predictor.get("shadow") is True


def _mirror_of(candidate: Mapping[str, Any] | None) -> int:
    """The share of live requests a shadow candidate gets copies of (Seldon: traffic 0 mirrors all)."""
    if not _is_shadow(candidate):
        return 0
    assert candidate is not None
    return int(candidate.get("traffic") or 0) or 100


def _weight_of(candidate: Mapping[str, Any] | None, pool: int) -> int:
    """The candidate's weight as a percent of the pool (several weights round to one share of a pool under
    100; the engine then believes the weight it asked for, so nothing is kept on the predictor)."""
    if candidate is None or pool <= 0:
        return 0
    return min(100, round(int(candidate.get("traffic") or 0) * 100 / pool))


def _candidate_from(stable: Predictor, target: TrafficTarget) -> Predictor:
    """A copy of the stable predictor serving the candidate's model: its own name and version, its own
    capacity (``replicas``, no autoscaler or explainer unless asked), no ``seldon.io/svc-name`` (Seldon's
    webhook refuses two predictors with one service name) and none of our bookkeeping."""
    candidate = copy.deepcopy(stable)
    candidate["name"] = target.candidate_predictor
    candidate.pop("shadow", None)
    candidate.pop("traffic", None)
    model_node(candidate, target.node)["modelUri"] = target.candidate_model_uri
    annotations = {k: v for k, v in _annotations(candidate).items()
                   if k != SVC_NAME_ANNOTATION and not str(k).startswith("modelrollout.dev/")}
    annotations[SELDON_VERSION_ANNOTATION] = target.candidate_version
    annotations[MANAGED_BY_ANNOTATION] = target.stable_predictor
    annotations[OWNER_UID_ANNOTATION] = target.owner_uid
    if target.owner_name:
        annotations[OWNER_ANNOTATION] = target.owner_name
    candidate["annotations"] = annotations
    candidate["replicas"] = target.replicas
    for component in candidate.get("componentSpecs") or ():
        if "replicas" in component:
            component["replicas"] = target.replicas
        if not target.copy_autoscaling:
            component.pop("hpaSpec", None)
            component.pop("kedaSpec", None)
    if not target.copy_explainer:
        candidate.pop("explainer", None)
    # Component specs name containers after graph nodes; the copy keeps them, so the same image serves.
    return candidate


def desired_predictors(predictors: list[Predictor], target: TrafficTarget, change: TrafficChange) -> list[Predictor]:
    """The predictors list after the change.

    Raises LookupError when the stable predictor is missing and ForeignPredictorError when the change
    would touch a candidate predictor this rollout did not create (checked on every write, under the
    read's resourceVersion, so two rollouts racing for one target cannot both win).
    """
    result = copy.deepcopy(predictors)
    stable = _find(result, target.stable_predictor)
    if stable is None:
        raise LookupError(f"stable predictor {target.stable_predictor!r} not found")
    owned = {target.stable_predictor, target.candidate_predictor}
    pool = _pool(result, owned)
    candidate = _find(result, target.candidate_predictor)
    if candidate is not None and not owned_by(candidate, target.owner_uid):
        raise ForeignPredictorError(f"predictor {target.candidate_predictor!r} was not created by this rollout")
    foreign = _foreign_owner(result, target)
    if foreign and change.kind in ("weight", "adopt"):
        raise ForeignPredictorError(f"ModelRollout {foreign} owns a candidate on stable predictor "
                                    f"{target.stable_predictor!r}")

    if change.kind == "weight":
        if candidate is None:
            candidate = _candidate_from(stable, target)
            result.insert(result.index(stable) + 1, candidate)
        else:  # keep the candidate's model in line with the spec, in case someone edited it
            model_node(candidate, target.node)["modelUri"] = target.candidate_model_uri
        if change.mirror_percent:
            # Seldon's shadow: the mesh copies this share of the live requests to it and drops its answers.
            # A shadow's traffic is the mirrored share (0 would mean all; the percentage is always written).
            candidate["shadow"] = True
            candidate["traffic"] = change.mirror_percent
            stable["traffic"] = pool
            return result
        candidate.pop("shadow", None)
        share = share_of(change.candidate_weight, pool)
        candidate["traffic"] = share  # only traffic changes per step: predictor annotations restart pods
        stable["traffic"] = pool - share
        return result

    if change.kind == "adopt":
        # The stable predictor takes the candidate's model (its pods restart anyway); traffic stays as it
        # is until it serves it.
        model_node(stable, target.node)["modelUri"] = target.candidate_model_uri
        stable["annotations"] = {**_annotations(stable), SELDON_VERSION_ANNOTATION: target.candidate_version}
        return result

    if change.kind == "promote" and _model_uri(stable, target.node) != target.candidate_model_uri:
        raise RuntimeError(f"stable predictor {target.stable_predictor!r} does not serve "
                           f"{target.candidate_model_uri} yet; its traffic cannot move")
    if change.kind == "rollback" and change.restore_model_uri \
            and _model_uri(stable, target.node) == target.candidate_model_uri:
        model_node(stable, target.node)["modelUri"] = change.restore_model_uri
        annotations = {k: v for k, v in _annotations(stable).items() if k != SELDON_VERSION_ANNOTATION}
        if change.restore_version:
            annotations[SELDON_VERSION_ANNOTATION] = change.restore_version
        stable["annotations"] = annotations
    if candidate is None:
        return result
    result = [p for p in result if p.get("name") != target.candidate_predictor]
    stable = _find(result, target.stable_predictor)
    assert stable is not None
    stable["traffic"] = pool
    return result


# ------------------------------------------------------------------ the backend


class DeploymentNotFound(LookupError):
    """The deployment a traffic write reads afresh is gone."""


class SeldonV1Backend:
    def __init__(self, api_client: ApiClient, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 field_manager: str | None = None, fence: Callable[[], float] | None = None,
                 watched: Callable[[str, str], Mapping[str, Any] | None] | None = None,
                 forget: Callable[[str, str], None] | None = None) -> None:
        self._api = CustomObjectsApi(api_client)
        # The watch's copy of a deployment, for observations (a miss reads the API server); writes always
        # read afresh and write conditionally. ``forget`` drops a copy the API server says is gone.
        self._watched = watched
        self._forget = forget
        self.request_timeout_s = request_timeout_s
        self._field_manager = field_manager  # who wrote, in the object's managedFields
        self._fence = fence  # leader election: seconds a write may still take; raises when it may not write

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = self._api.get_namespaced_custom_object(SELDON_GROUP, SELDON_VERSION, namespace, SELDON_PLURAL, name,
                                                         _request_timeout=self.request_timeout_s)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(obj)  # type: ignore[call-overload,no-any-return]

    async def observe(self, namespace: str, target: TrafficTarget) -> TargetObservation:
        sdep = self._watched(namespace, target.name) if self._watched is not None else None
        if sdep is None:
            sdep = await asyncio.to_thread(self._get, namespace, target.name)
        return observe_deployment(sdep, target)

    def _apply_sync(self, namespace: str, target: TrafficTarget, change: TrafficChange) -> bool:
        for _ in range(CONFLICT_RETRIES):
            sdep = self._get(namespace, target.name)
            if sdep is None:
                raise DeploymentNotFound(f"SeldonDeployment {namespace}/{target.name} not found")
            predictors = list(sdep.get("spec", {}).get("predictors") or [])
            desired = desired_predictors(predictors, target, change)
            if desired == predictors:
                return False
            sdep["spec"]["predictors"] = desired  # metadata.resourceVersion from the read guards the write
            timeout = self.request_timeout_s
            if self._fence is not None:  # just before the request is sent, in this worker thread
                timeout = min(timeout, self._fence())
            try:
                self._api.replace_namespaced_custom_object(
                    SELDON_GROUP, SELDON_VERSION, namespace, SELDON_PLURAL, target.name, sdep,
                    field_manager=self._field_manager, _request_timeout=timeout)
                return True
            except ApiException as exc:
                if exc.status in (400, 403, 422):  # a webhook or validation said no: asking again won't help
                    raise TrafficRefused(f"the API server refused the change to SeldonDeployment {target.name}: "
                                         f"{_refusal(exc)}") from exc
                if exc.status != 409:
                    raise
        raise RuntimeError(f"SeldonDeployment {namespace}/{target.name} kept changing under us: "
                           f"{CONFLICT_RETRIES} conflicting writes in a row")

    async def apply(self, namespace: str, target: TrafficTarget, change: TrafficChange) -> bool:
        try:
            return await asyncio.to_thread(self._apply_sync, namespace, target, change)
        except (DeploymentNotFound, ApiException) as exc:
            # Gone, though the cache may still hold it: deleted while the watch re-listed, no DELETED event
            # came. Forget it (here, on the loop, like the watch), so observations report it missing.
            if self._forget is not None and (isinstance(exc, DeploymentNotFound) or exc.status == 404):
                self._forget(namespace, target.name)
            raise


def _refusal(exc: ApiException) -> str:
    """The API server's own message (e.g. an admission webhook's reason), bounded."""
    try:
        message = str(json.loads(exc.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        message = ""
    return (message or f"HTTP {exc.status} {exc.reason}")[:400]
