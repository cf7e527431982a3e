"""Spec parsing, defaults and durations (pure)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from modelrollout.api import (
    Compare,
    JudgeKind,
    Phase,
    RolloutSpec,
    SpecError,
    StepKind,
    format_duration,
    parse_duration,
)

EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "modelrollout.yaml").read_text())


def spec(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(EXAMPLE["spec"])
    out.update(changes)
    return out  # type: ignore[no-any-return]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600),
                                              ("1.5m", 90), ("2h3m4s", 7384)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-5s", "5", "5 s", "s", "1d", "five minutes", "1m-2s", "5s\n"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(SpecError, match="is not a duration"):
        parse_duration(text, "spec.x")


@given(st.integers(min_value=1, max_value=10 * 24 * 3600))
def test_format_duration_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_example_parses_with_defaults() -> None:
    parsed = RolloutSpec.parse(EXAMPLE["spec"])
    assert parsed.candidate.predictor_name == "main-candidate"
    assert [s.kind for s in parsed.steps] == [StepKind.SET_WEIGHT, StepKind.PAUSE, StepKind.SET_WEIGHT,
                                             StepKind.ANALYSIS, StepKind.PAUSE, StepKind.SET_WEIGHT]
    assert parsed.steps[1].duration_s == 30
    assert parsed.analysis.interval_s == 15
    assert parsed.analysis.metric("latency-p99") is not None
    bare = RolloutSpec.parse(spec(analysis=None, strategy={"canary": {"steps": [{"setWeight": 100}]}}))
    assert (bare.analysis.interval_s, bare.analysis.failure_limit, bare.analysis.inconclusive_limit,
            bare.analysis.min_requests) == (30, 2, 4, 50)


def test_indefinite_pause() -> None:
    parsed = RolloutSpec.parse(spec(strategy={"canary": {"steps": [{"pause": {}}, {"setWeight": 100}]}}))
    assert parsed.steps[0].duration_s is None
    assert parsed.steps[0].describe() == "pause until resumed"


@pytest.mark.parametrize(("changes", "field"), [
    ({"targetRef": None}, "spec.targetRef"),
    ({"targetRef": {"kind": "Deployment", "name": "x"}}, "spec.targetRef.kind"),
    ({"stablePredictor": "Main"}, "spec.stablePredictor"),
    ({"stablePredictor": "main\n"}, "spec.stablePredictor"),
    ({"candidate": {"modelUri": "file:///m", "version": "2", "predictorName": "main"}},
     "spec.candidate.predictorName"),
    ({"strategy": {"blueGreen": {}}}, "spec.strategy"),
    ({"strategy": {"canary": {"steps": []}}}, "spec.strategy.canary.steps"),
    ({"strategy": {"canary": {"steps": [{"setWeight": 101}]}}}, "spec.strategy.canary.steps[0].setWeight"),
    ({"strategy": {"canary": {"steps": [{"setWeight": 5, "pause": {}}]}}}, "spec.strategy.canary.steps[0]"),
    ({"strategy": {"canary": {"steps": [{"analysis": {"metrics": ["nope"]}}]}}},
     "spec.strategy.canary.steps[0].analysis.metrics"),
    ({"strategy": {"canary": {"steps": [{"analysis": {}}]}}, "analysis": {}}, "spec.strategy.canary.steps[0].analysis"),
    ({"analysis": {"interval": "500ms"}}, "spec.analysis.interval"),
    ({"analysis": {"warmup": "2h"}}, "spec.analysis.warmup"),
    ({"analysis": {"warmup": "soon"}}, "spec.analysis.warmup"),
    ({"analysis": {"metrics": [{"name": "a", "template": "request-count"}]}}, "spec.analysis.metrics[0]"),
    ({"analysis": {"metrics": [{"name": "a", "template": "request-count", "min": 2, "max": 1}]}},
     "spec.analysis.metrics[0]"),
    ({"analysis": {"metrics": [{"name": "a", "min": 1}]}}, "spec.analysis.metrics[0]"),
    ({"analysis": {"metrics": [{"name": "a", "query": "x", "min": 1}, {"name": "a", "query": "y", "min": 1}]}},
     "spec.analysis.metrics[1].name"),
])
def test_unusable_specs_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        RolloutSpec.parse(spec(**changes))
    assert caught.value.field_path == field


def test_terminal_phases() -> None:
    assert {p for p in Phase if p.terminal} == {Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED}


# --------------------------------------------------------------------------------------------------
# Judges: a threshold (on the point or the interval) or a comparison with the stable model


def with_metric(**metric: Any) -> dict[str, Any]:
    """The example with one metric, and steps that leave the stable some traffic (as a comparison needs)."""
    analysis = copy.deepcopy(EXAMPLE["spec"]["analysis"])
    analysis["metrics"] = [{"name": "m", **metric}]
    return spec(analysis=analysis, strategy={"canary": {"steps": [{"setWeight": 20}, {"setWeight": 50}]}})


def test_a_comparison_needs_no_min_or_max_and_gets_its_defaults() -> None:
    metric = RolloutSpec.parse(with_metric(template="request-success-rate",
                                           compare={"tolerance": 0.01})).analysis.metrics[0]
    assert metric.judge is JudgeKind.COMPARE and metric.min is None and metric.max is None
    assert metric.compare == Compare(tolerance=0.01, relative=False, confidence=0.95, min_samples=100)


def test_a_threshold_with_a_confidence_judges_the_interval_of_a_proportion() -> None:
    metric = RolloutSpec.parse(with_metric(template="model-accuracy", min=0.9, confidence=0.95)).analysis.metrics[0]
    assert (metric.judge, metric.min, metric.confidence) == (JudgeKind.THRESHOLD, 0.9, 0.95)


@pytest.mark.parametrize("metric, says", [
    ({"template": "request-success-rate"}, "declares no judge"),
    ({"template": "request-success-rate", "min": 0.99, "compare": {"tolerance": 0.01}}, "declares two judges"),
    ({"template": "request-success-rate", "confidence": 0.9, "compare": {"tolerance": 0.01}}, "declares two judges"),
    ({"query": "sum(x)", "compare": {"tolerance": 0.01}}, "not an inline query"),
    ({"template": "request-count", "compare": {"tolerance": 0.01}}, "cannot be compared"),
    ({"template": "prediction-distribution", "compare": {"tolerance": 0.01}}, "set maxPSI, maxJS or both"),
    ({"template": "request-success-rate", "compare": {"maxPSI": 0.2}}, "bound a distribution's drift"),
    ({"template": "request-duration-p99", "compare": {"tolerance": 0.2, "relative": True}}, "always relative"),
    ({"template": "request-success-rate", "compare": {"tolerance": 0.01, "confidence": 1.0}}, "not a confidence"),
    ({"template": "request-success-rate", "compare": {"tolerance": 0.01, "minSamples": 0}}, "at least 1"),
    ({"template": "request-success-rate", "compare": {"tolerance": -0.1}}, "not a tolerated difference"),
    ({"template": "request-success-rate", "compare": {"tolerance": 1.0, "relative": True}},
     "not a tolerated difference"),
    ({"template": "prediction-distribution", "compare": {"maxJS": 0}}, "must be above 0"),
    ({"template": "prediction-distribution", "min": 0.5}, "can only be compared"),
    ({"template": "request-duration-p99", "max": 0.5, "confidence": 0.95}, "is not a proportion"),
    ({"query": "sum(x)", "min": 0.5, "confidence": 0.95}, "needs counts"),
    ({"template": "request-success-rate", "min": 0.5, "confidence": 0.4}, "not a confidence"),
])
def test_a_metric_with_no_judge_two_judges_or_a_judge_it_cannot_have_is_refused(metric: dict[str, Any],
                                                                                says: str) -> None:
    with pytest.raises(SpecError, match=says):
        RolloutSpec.parse(with_metric(**metric))


def test_a_comparison_with_a_step_that_leaves_the_stable_no_traffic_is_refused() -> None:
    raw = with_metric(template="request-success-rate", compare={"tolerance": 0.01})
    raw["strategy"] = {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 100}]}}
    with pytest.raises(SpecError, match="a setWeight of 100 leaves the stable model no traffic"):
        RolloutSpec.parse(raw)
    raw["strategy"] = {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 50}]}}
    assert RolloutSpec.parse(raw).analysis.metrics[0].judge is JudgeKind.COMPARE
