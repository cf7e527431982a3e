"""Seldon v1 predictor transformations (pure): weights, promotion, rollback, what is kept; and the backend's
use of the deployments' cache."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException
from modelrollout.api import RolloutSpec
from modelrollout.backends.factory import make_backends
from modelrollout.backends.seldon_v1 import (
    OWNER_UID_ANNOTATION,
    SELDON_VERSION_ANNOTATION,
    SVC_NAME_ANNOTATION,
    ForeignPredictorError,
    desired_predictors,
    model_node,
    observe_deployment,
)
from modelrollout.cache import ObjectCache
from modelrollout.traffic import Readiness, TrafficChange, TrafficTarget, share_of

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
_SPEC = RolloutSpec.parse(yaml.safe_load((EXAMPLES / "modelrollout.yaml").read_text())["spec"])
SPEC = TrafficTarget(kind="SeldonDeployment", name=_SPEC.target.name, stable_predictor=_SPEC.stable_predictor,
                     candidate_predictor=_SPEC.candidate.predictor_name, candidate_model_uri=_SPEC.candidate.model_uri,
                     candidate_version=_SPEC.candidate.version, owner_uid="uid-1", owner_name="models/digits")
OTHER = TrafficTarget(kind="SeldonDeployment", name=SPEC.name, stable_predictor="main",
                      candidate_predictor="main-canary", candidate_model_uri="file:///models/digits/2.1.0",
                      candidate_version="2.1.0", owner_uid="uid-2", owner_name="models/other")
SDEP = yaml.safe_load((EXAMPLES / "seldondeployment.yaml").read_text())


def predictors() -> list[dict[str, Any]]:
    return copy.deepcopy(SDEP["spec"]["predictors"])


def traffic(preds: list[dict[str, Any]]) -> dict[str, int]:
    return {p["name"]: p.get("traffic", 0) for p in preds}


def test_first_weight_adds_a_candidate_copied_from_stable() -> None:
    out = desired_predictors(predictors(), SPEC, TrafficChange("weight", 10))
    assert traffic(out) == {"main": 90, "main-candidate": 10}
    candidate = out[1]
    assert model_node(candidate)["modelUri"] == "file:///models/digits/2.0.0"
    assert candidate["annotations"][SELDON_VERSION_ANNOTATION] == "2.0.0"  # the executor's predictor_version
    assert candidate["graph"]["implementation"] == predictors()[0]["graph"]["implementation"]
    assert model_node(out[0])["modelUri"] == "file:///models/digits/1.0.0"  # stable untouched


def test_weight_change_is_idempotent() -> None:
    once = desired_predictors(predictors(), SPEC, TrafficChange("weight", 50))
    assert desired_predictors(once, SPEC, TrafficChange("weight", 50)) == once


def test_promotion_first_gives_stable_the_model_then_moves_traffic() -> None:
    staged = desired_predictors(predictors(), SPEC, TrafficChange("weight", 100))
    with pytest.raises(RuntimeError, match="does not serve"):
        desired_predictors(staged, SPEC, TrafficChange("promote"))  # stable still on the old model
    adopted = desired_predictors(staged, SPEC, TrafficChange("adopt"))
    assert traffic(adopted) == traffic(staged)  # traffic stays until the stable predictor serves the model
    assert model_node(adopted[0])["modelUri"] == "file:///models/digits/2.0.0"
    out = desired_predictors(adopted, SPEC, TrafficChange("promote"))
    assert traffic(out) == {"main": 100}
    assert model_node(out[0])["modelUri"] == "file:///models/digits/2.0.0"
    obs = observe_deployment({"spec": {"predictors": out}}, SPEC)
    assert obs.stable_version == "2.0.0" and not obs.candidate_present


def test_rollback_restores_stable() -> None:
    staged = desired_predictors(predictors(), SPEC, TrafficChange("weight", 50))
    out = desired_predictors(staged, SPEC, TrafficChange("rollback"))
    assert out == [{**predictors()[0], "traffic": 100}]


def test_a_rollback_after_a_failed_promotion_restores_the_stable_model() -> None:
    staged = desired_predictors(predictors(), SPEC, TrafficChange("weight", 50))
    adopted = desired_predictors(staged, SPEC, TrafficChange("adopt"))
    out = desired_predictors(adopted, SPEC, TrafficChange("rollback", restore_model_uri="file:///models/digits/1.0.0"))
    assert traffic(out) == {"main": 100}
    assert model_node(out[0])["modelUri"] == "file:///models/digits/1.0.0"
    # someone else's later model on stable is left alone by a repeated rollback
    out[0]["graph"]["modelUri"] = "file:///models/digits/3.0.0"
    again = desired_predictors(out, SPEC, TrafficChange("rollback", restore_model_uri="file:///models/digits/1.0.0"))
    assert model_node(again[0])["modelUri"] == "file:///models/digits/3.0.0"


def test_the_candidate_carries_its_owner_and_drops_the_stable_service_name() -> None:
    preds = predictors()
    preds[0]["annotations"] = {SVC_NAME_ANNOTATION: "digits-main", "team": "ml"}
    out = desired_predictors(preds, SPEC, TrafficChange("weight", 10))
    annotations = out[1]["annotations"]
    assert annotations[OWNER_UID_ANNOTATION] == "uid-1"
    assert SVC_NAME_ANNOTATION not in annotations and annotations["team"] == "ml"
    assert observe_deployment({"spec": {"predictors": out}}, SPEC).candidate_owned


def test_a_predictor_the_rollout_did_not_create_is_never_taken_over() -> None:
    preds = predictors()
    preds[0]["traffic"] = 70
    preds.append({**copy.deepcopy(preds[0]), "name": "main-candidate", "traffic": 30})  # made by a person
    obs = observe_deployment({"spec": {"predictors": preds}}, SPEC)
    assert obs.candidate_present and not obs.candidate_owned and not obs.candidate_ours
    for change in (TrafficChange("weight", 10), TrafficChange("rollback"), TrafficChange("adopt")):
        with pytest.raises(ForeignPredictorError):
            desired_predictors(preds, SPEC, change)


def test_a_second_rollout_on_the_same_stable_predictor_is_refused() -> None:
    theirs = desired_predictors(predictors(), OTHER, TrafficChange("weight", 20))
    obs = observe_deployment({"spec": {"predictors": theirs}}, SPEC)
    assert obs.foreign_owner == "models/other"
    with pytest.raises(ForeignPredictorError, match="models/other"):
        desired_predictors(theirs, SPEC, TrafficChange("weight", 10))
    assert desired_predictors(theirs, SPEC, TrafficChange("rollback")) == theirs  # nothing of ours to remove


def test_other_predictors_keep_their_share_and_fields() -> None:
    preds = predictors()
    preds[0]["traffic"] = 80
    preds.append({"name": "legacy", "traffic": 20, "graph": {"name": "x", "modelUri": "file:///legacy"},
                  "componentSpecs": [{"spec": {"containers": [{"name": "x", "image": "legacy:1"}]}}]})
    preds.append({"name": "mirror", "shadow": True, "graph": {"name": "y"}})
    out = desired_predictors(preds, SPEC, TrafficChange("weight", 33))
    assert traffic(out)["legacy"] == 20 and traffic(out)["mirror"] == 0
    assert sum(t for n, t in traffic(out).items() if n != "mirror") == 100
    assert out[2] == preds[1] and out[3] == preds[2]
    observed = observe_deployment({"spec": {"predictors": out}}, SPEC)
    assert (observed.pool, traffic(out)["main-candidate"]) == (80, 26)  # 33% of the 80 the rollout controls
    assert share_of(observed.candidate_weight, observed.pool) == share_of(33, 80)  # the engine believes 33


@given(st.integers(0, 100), st.integers(0, 100))
def test_weights_are_integers_summing_to_100(first: int, second: int) -> None:
    out = desired_predictors(predictors(), SPEC, TrafficChange("weight", first))
    out = desired_predictors(out, SPEC, TrafficChange("weight", second))
    assert sum(p["traffic"] for p in out) == 100
    assert all(isinstance(p["traffic"], int) for p in out)
    assert observe_deployment({"spec": {"predictors": out}}, SPEC).candidate_weight == second


def test_observe_reports_missing_target_and_stable() -> None:
    assert not observe_deployment(None, SPEC).exists
    missing = observe_deployment({"spec": {"predictors": [{"name": "other", "graph": {"name": "g"}}]}}, SPEC)
    assert missing.exists and not missing.stable_present and "'main' not found" in missing.error
    assert "other" in missing.error
    with pytest.raises(LookupError):
        desired_predictors([{"name": "other", "graph": {}}], SPEC, TrafficChange("weight", 10))


def test_model_node_finds_nested_model() -> None:
    pred = {"graph": {"name": "transformer", "children": [{"name": "m", "modelUri": "s3://b/m/3.1"}]}}
    assert model_node(pred)["name"] == "m"
    obs = observe_deployment({"spec": {"predictors": [{"name": "main", **pred}]}}, SPEC)
    assert obs.stable_version == "3.1"


def test_observe_reads_the_controllers_state() -> None:
    sdep = {"spec": {"predictors": predictors()}, "status": {"state": "Creating", "description": "waiting for x"}}
    obs = observe_deployment(sdep, SPEC)
    assert obs.readiness is Readiness.PENDING and obs.readiness_detail == "Creating: waiting for x"
    assert observe_deployment({"spec": {"predictors": predictors()}}, SPEC).serving  # no controller: serving
    failed = observe_deployment({"spec": {"predictors": predictors()}, "status": {"state": "Failed"}}, SPEC)
    assert failed.failed and not failed.serving and failed.readiness_detail == "Failed"
    available = observe_deployment({"spec": {"predictors": predictors()}, "status": {"state": "Available"}}, SPEC)
    assert available.serving and available.readiness is Readiness.SERVING


TRANSFORMED = {"name": "main", "traffic": 100, "replicas": 3, "annotations": {"seldon.io/svc-name": "digits-main"},
               "explainer": {"type": "AnchorTabular", "modelUri": "gs://bucket/explainer"},
               "componentSpecs": [{"replicas": 3, "hpaSpec": {"minReplicas": 3, "maxReplicas": 10},
                                   "spec": {"containers": [{"name": "features", "image": "features:1"}]}}],
               "graph": {"name": "features", "type": "TRANSFORMER", "modelUri": "gs://bucket/feature-scaler",
                         "children": [{"name": "classifier", "type": "MODEL", "implementation": "SKLEARN_SERVER",
                                       "modelUri": "file:///models/digits/1.0.0"}]}}


def test_the_candidates_model_goes_to_the_model_node_never_to_a_transformer_in_front_of_it() -> None:
    out = desired_predictors([copy.deepcopy(TRANSFORMED)], SPEC, TrafficChange("weight", 10))
    candidate = out[1]
    assert candidate["graph"]["modelUri"] == "gs://bucket/feature-scaler"  # the transformer is untouched
    assert candidate["graph"]["children"][0]["modelUri"] == "file:///models/digits/2.0.0"
    assert observe_deployment({"spec": {"predictors": out}}, SPEC).stable_model_uri == "file:///models/digits/1.0.0"


def test_several_model_nodes_need_spec_candidate_node() -> None:
    two = copy.deepcopy(TRANSFORMED)
    two["graph"]["type"] = "MODEL"
    observed = observe_deployment({"spec": {"predictors": [two]}}, SPEC)
    assert not observed.ready and "spec.candidate.node" in observed.error
    named = TrafficTarget(**{**SPEC.__dict__, "node": "classifier"})
    out = desired_predictors([two], named, TrafficChange("weight", 10))
    assert out[1]["graph"]["children"][0]["modelUri"] == "file:///models/digits/2.0.0"


def test_a_canary_costs_its_own_replicas_not_a_copy_of_the_fleet() -> None:
    out = desired_predictors([copy.deepcopy(TRANSFORMED)], SPEC, TrafficChange("weight", 10))
    candidate = out[1]
    assert candidate["replicas"] == 1 and candidate["componentSpecs"][0]["replicas"] == 1
    assert "hpaSpec" not in candidate["componentSpecs"][0] and "explainer" not in candidate
    assert "seldon.io/svc-name" not in candidate["annotations"]
    asked = TrafficTarget(**{**SPEC.__dict__, "replicas": 2, "copy_autoscaling": True, "copy_explainer": True})
    kept = desired_predictors([copy.deepcopy(TRANSFORMED)], asked, TrafficChange("weight", 10))[1]
    assert kept["replicas"] == 2 and kept["componentSpecs"][0]["hpaSpec"] and kept["explainer"]
    assert out[0] == {**TRANSFORMED, "traffic": 90}  # stable keeps everything but its share


def test_a_weight_step_changes_nothing_but_traffic_so_no_pod_restarts() -> None:
    at_10 = desired_predictors([copy.deepcopy(TRANSFORMED)], SPEC, TrafficChange("weight", 10))
    at_50 = desired_predictors(at_10, SPEC, TrafficChange("weight", 50))
    for before, after in zip(at_10, at_50, strict=True):
        assert {k: v for k, v in before.items() if k != "traffic"} == {k: v for k, v in after.items() if k != "traffic"}


# --------------------------------------------------------------------------------------------------
# Mirroring: the traffic state a shadow needs, as Seldon's shadow predictor


def test_a_mirrored_candidate_is_a_shadow_that_serves_nobody_and_passes_seldons_webhook() -> None:
    from localcluster.dataplane.webhook import validate

    out = desired_predictors(predictors(), SPEC, TrafficChange("weight", mirror_percent=30))
    candidate = next(p for p in out if p["name"] == SPEC.candidate_predictor)
    assert candidate["shadow"] is True and candidate["traffic"] == 30
    assert traffic(out)["main"] == 100  # every user request still goes to the stable model
    assert validate({**SDEP, "spec": {**SDEP["spec"], "predictors": out}}) == []
    seen = observe_deployment({"spec": {"predictors": out}}, SPEC)
    assert (seen.candidate_present, seen.candidate_weight, seen.candidate_mirror) == (True, 0, 30)


def test_a_shadow_that_goes_on_to_a_weight_stops_being_a_shadow() -> None:
    shadow = desired_predictors(predictors(), SPEC, TrafficChange("weight", mirror_percent=100))
    live = desired_predictors(shadow, SPEC, TrafficChange("weight", 20))
    candidate = next(p for p in live if p["name"] == SPEC.candidate_predictor)
    assert "shadow" not in candidate and traffic(live) == {"main": 80, "main-candidate": 20}
    seen = observe_deployment({"spec": {"predictors": live}}, SPEC)
    assert (seen.candidate_weight, seen.candidate_mirror) == (20, 0)


def test_a_shadow_with_seldons_zero_traffic_mirrors_everything() -> None:
    shadow = desired_predictors(predictors(), SPEC, TrafficChange("weight", mirror_percent=100))
    next(p for p in shadow if p["name"] == SPEC.candidate_predictor)["traffic"] = 0
    assert observe_deployment({"spec": {"predictors": shadow}}, SPEC).candidate_mirror == 100


def test_a_shadow_is_rolled_back_like_any_candidate() -> None:
    shadow = desired_predictors(predictors(), SPEC, TrafficChange("weight", mirror_percent=50))
    assert traffic(desired_predictors(shadow, SPEC, TrafficChange("rollback"))) == {"main": 100}


@pytest.mark.parametrize("bad", [dict(kind="weight", candidate_weight=10, mirror_percent=10),
                                 dict(kind="adopt", mirror_percent=10), dict(kind="weight", mirror_percent=101),
                                 dict(kind="weight", candidate_weight=-1)])
def test_a_traffic_state_that_would_show_users_a_mirrored_answer_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TrafficChange(**bad)


@pytest.mark.parametrize("gone_at", ["read", "write"])
def test_a_deployment_deleted_without_a_deleted_event_is_forgotten_when_a_traffic_write_finds_it_gone(
        gone_at: str) -> None:
    """After a watch re-lists, a deployment deleted meanwhile stays in the cache (no DELETED event): the
    rollout would observe it as there and fail its traffic write every few seconds, never reporting its
    target missing. The write's fresh read (or the write itself) answering 404 drops the copy."""

    class Api:
        def get_namespaced_custom_object(self, *_: Any, **__: Any) -> dict[str, Any]:
            if gone_at == "read":
                raise ApiException(status=404, reason="Not Found")
            return copy.deepcopy(sdep)

        def replace_namespaced_custom_object(self, *_: Any, **__: Any) -> dict[str, Any]:
            raise ApiException(status=404, reason="Not Found")  # deleted between the read and the write

    sdep = {**copy.deepcopy(SDEP), "metadata": {"namespace": "models", "name": SPEC.name, "resourceVersion": "7"}}
    cache = ObjectCache()
    cache.put(sdep)
    backend = make_backends(cast(Any, object()), 5.0, watched={"SeldonDeployment": cache.get},
                            forget={"SeldonDeployment": cache.drop})["SeldonDeployment"]
    backend._api = Api()  # type: ignore[attr-defined]
    assert asyncio.run(backend.observe("models", SPEC)).exists  # the ghost, from the cache
    with pytest.raises((LookupError, ApiException)):
        asyncio.run(backend.apply("models", SPEC, TrafficChange("weight", 10)))
    assert cache.get("models", SPEC.name) is None
    if gone_at == "read":  # the next tick reports the target missing (TargetNotFound)
        assert not asyncio.run(backend.observe("models", SPEC)).exists
