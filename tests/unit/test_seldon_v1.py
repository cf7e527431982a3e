"""Seldon v1 predictor transformations (pure): weights, promotion, rollback, what is kept."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from modelrollout.api import RolloutSpec
from modelrollout.backends.seldon_v1 import (
    VERSION_ANNOTATION,
    desired_predictors,
    model_node,
    observe_deployment,
)
from modelrollout.engine import TrafficChange

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPEC = RolloutSpec.parse(yaml.safe_load((EXAMPLES / "modelrollout.yaml").read_text())["spec"])
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
    assert candidate["annotations"][VERSION_ANNOTATION] == "2.0.0"
    assert candidate["graph"]["implementation"] == predictors()[0]["graph"]["implementation"]
    assert model_node(out[0])["modelUri"] == "file:///models/digits/1.0.0"  # stable untouched


def test_weight_change_is_idempotent() -> None:
    once = desired_predictors(predictors(), SPEC, TrafficChange("weight", 50))
    assert desired_predictors(once, SPEC, TrafficChange("weight", 50)) == once


def test_promote_moves_the_model_to_stable_and_removes_candidate() -> None:
    staged = desired_predictors(predictors(), SPEC, TrafficChange("weight", 100))
    out = desired_predictors(staged, SPEC, TrafficChange("promote"))
    assert traffic(out) == {"main": 100}
    assert model_node(out[0])["modelUri"] == "file:///models/digits/2.0.0"
    obs = observe_deployment({"spec": {"predictors": out}}, SPEC)
    assert obs.stable_version == "2.0.0" and not obs.candidate_present


def test_rollback_restores_stable() -> None:
    staged = desired_predictors(predictors(), SPEC, TrafficChange("weight", 50))
    out = desired_predictors(staged, SPEC, TrafficChange("rollback"))
    assert out == [{**predictors()[0], "traffic": 100}]


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
    assert observe_deployment({"spec": {"predictors": out}}, SPEC).candidate_weight == 33


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
    assert not obs.serving and obs.state_message == "waiting for x"
    assert observe_deployment({"spec": {"predictors": predictors()}}, SPEC).serving  # no controller: serving
