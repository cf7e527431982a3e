"""The CRD schema and CEL rules on a real kube-apiserver: valid specs in, invalid ones out with a clear message."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.kube import Kube
from testkit.rollouts import model_rollout

REPO = Path(__file__).resolve().parents[2]


def mutated(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The example rollout with its spec changed by mutate."""
    obj = model_rollout(name_prefix="r")
    mutate(obj["spec"])
    return obj


def steps(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["strategy"]["canary"]["steps"]  # type: ignore[no-any-return]


def metric(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["analysis"]["metrics"][0]  # type: ignore[no-any-return]


def remetric(spec: dict[str, Any], **changes: Any) -> None:
    """Change the first metric: a value of None removes that field."""
    first = metric(spec)
    for key, value in changes.items():
        first.pop(key, None)
        if value is not None:
            first[key] = value


def ab_test(spec: dict[str, Any], **test: Any) -> None:
    """An A/B test on accuracy (compare) with the example's other metrics as guardrails; ``test`` replaces
    the abTest fields (None removes one); ``primary_window`` sets a window on the primary metric."""
    window = test.pop("primary_window", None)
    primary = {"name": "accuracy", "template": "model-accuracy", "compare": {"tolerance": 0.01}}
    if window:
        primary["window"] = window
    spec["analysis"]["metrics"] = [primary, *(m for m in spec["analysis"]["metrics"] if m["name"] != "accuracy")]
    body = {"weight": 50, "duration": "10m", "primary": "accuracy"}
    for key, value in test.items():
        body.pop(key, None)
        if value is not None:
            body[key] = value
    spec["strategy"] = {"abTest": body}


def shadow(spec: dict[str, Any], **body: Any) -> None:
    """A shadow with the example's metrics and a canary step after it; ``body`` replaces the shadow's fields
    (None removes one)."""
    fields: dict[str, Any] = {"mirrorPercent": 100, "duration": "2m", "steps": [{"setWeight": 20}]}
    for key, value in body.items():
        fields.pop(key, None)
        if value is not None:
            fields[key] = value
    spec["strategy"] = {"shadow": fields}


# (case id, mutation, substrings the API server's message must contain: the field, then the reason)
INVALID: list[tuple[str, Callable[[dict[str, Any]], None], tuple[str, ...]]] = [
    ("weight-above-100", lambda s: steps(s)[0].update(setWeight=150),
     ("spec.strategy.canary.steps[0].setWeight", "less than or equal to 100")),
    ("weight-negative", lambda s: steps(s)[0].update(setWeight=-5),
     ("spec.strategy.canary.steps[0].setWeight", "greater than or equal to 0")),
    ("duration-negative", lambda s: steps(s)[1].update(pause={"duration": "-5s"}),
     ("spec.strategy.canary.steps[1].pause.duration", "should match")),
    ("duration-malformed", lambda s: steps(s)[1].update(pause={"duration": "five minutes"}),
     ("spec.strategy.canary.steps[1].pause.duration", "should match")),
    ("no-steps", lambda s: s["strategy"]["canary"].update(steps=[]),
     ("spec.strategy.canary.steps", "should have at least 1 items")),
    ("step-with-two-actions", lambda s: steps(s)[0].update(pause={}),
     ("spec.strategy.canary.steps[0]", "exactly one of setWeight, pause, analysis")),
    ("metric-without-source", lambda s: metric(s).pop("template"),
     ("spec.analysis.metrics[0]", "exactly one of template (builtin), templateRef (AnalysisTemplate) or query")),
    ("metric-with-two-sources", lambda s: metric(s).update(query="vector(1)"),
     ("spec.analysis.metrics[0]", "exactly one of template")),
    ("metric-without-a-judge", lambda s: metric(s).pop("min"),
     ("spec.analysis.metrics[0]", "a metric declares a judge: min, max or both (a threshold), or compare")),
    # Comparative judges and thresholds on an interval (spec.analysis.metrics[].compare / .confidence).
    ("compare-and-threshold", lambda s: remetric(s, compare={"tolerance": 0.01}),
     ("spec.analysis.metrics[0]", "one judge: min/max (a threshold) or compare, not both")),
    ("compare-on-an-inline-query", lambda s: remetric(s,
        template=None, query="vector(1)", min=None, compare={"tolerance": 0.01}),
     ("spec.analysis.metrics[0]", "compare measures both models by a template")),
    ("confidence-on-an-inline-query", lambda s: remetric(s, template=None, query="vector(1)", confidence=0.95),
     ("spec.analysis.metrics[0]", "a threshold on an interval needs a template")),
    ("confidence-of-one", lambda s: remetric(s, confidence=1.0),
     ("spec.analysis.metrics[0].confidence", "less than 1")),
    ("confidence-below-a-half", lambda s: remetric(s, confidence=0.3),
     ("spec.analysis.metrics[0].confidence", "greater than or equal to 0.5")),
    ("compare-tolerance-negative", lambda s: remetric(s, min=None, compare={"tolerance": -0.1}),
     ("spec.analysis.metrics[0].compare.tolerance", "greater than or equal to 0")),
    ("compare-min-samples-zero", lambda s: remetric(s, min=None, compare={"tolerance": 0.1, "minSamples": 0}),
     ("spec.analysis.metrics[0].compare.minSamples", "greater than or equal to 1")),
    ("compare-tolerance-and-drift-bound", lambda s: remetric(s,
        min=None, compare={"tolerance": 0.1, "maxPSI": 0.2}),
     ("spec.analysis.metrics[0].compare", "not both")),
    ("compare-js-above-one", lambda s: remetric(s, min=None, compare={"maxJS": 1.5}),
     ("spec.analysis.metrics[0].compare.maxJS", "less than or equal to 1")),
    ("compare-psi-zero", lambda s: remetric(s, min=None, compare={"maxPSI": 0}),
     ("spec.analysis.metrics[0].compare.maxPSI", "greater than 0")),
    ("compare-confidence-of-one", lambda s: remetric(s, min=None, compare={"tolerance": 0.1, "confidence": 1}),
     ("spec.analysis.metrics[0].compare.confidence", "less than 1")),
    ("min-above-max", lambda s: metric(s).update(max=0.5),
     ("spec.analysis.metrics[0]", "min must not exceed max")),
    ("unknown-builtin-template", lambda s: metric(s).update(template="request-magic"),
     ("spec.analysis.metrics[0].template", "Unsupported value")),
    ("duplicate-metric-names", lambda s: s["analysis"]["metrics"][1].update(name="success-rate"),
     ("spec.analysis.metrics[1]", "Duplicate value")),
    ("unknown-strategy", lambda s: s.update(strategy={"blueGreen": {"steps": [{"setWeight": 10}]}}),
     ("spec.strategy", "blueGreen")),
    ("missing-targetRef", lambda s: s.pop("targetRef"),
     ("spec.targetRef", "Required value")),
    ("unsupported-target-kind", lambda s: s["targetRef"].update(kind="Deployment"),
     ("spec.targetRef.kind", "Unsupported value")),
    ("candidate-named-like-stable", lambda s: s["candidate"].update(predictorName="main"),
     ("spec.candidate.predictorName", "must differ from stablePredictor")),
    ("candidate-without-version", lambda s: s["candidate"].pop("version"),
     ("spec.candidate.version", "Required value")),
    ("model-uri-not-a-uri", lambda s: s["candidate"].update(modelUri="models/digits"),
     ("spec.candidate.modelUri", "should match")),
    ("stable-not-a-dns-label", lambda s: s.update(stablePredictor="Main_1"),
     ("spec.stablePredictor", "should match")),
    ("interval-malformed", lambda s: s["analysis"].update(interval="15"),
     ("spec.analysis.interval", "should match")),
    ("warmup-malformed", lambda s: s["analysis"].update(warmup="ten seconds"),
     ("spec.analysis.warmup", "should match")),
    ("warmup-above-an-hour", lambda s: s["analysis"].update(warmup="2h"),
     ("spec.analysis.warmup", "warmup is at most 1h")),
    # A/B tests (spec.strategy.abTest)
    ("ab-weight-zero", lambda s: ab_test(s, weight=0),
     ("spec.strategy.abTest.weight", "greater than or equal to 1")),
    ("ab-weight-100", lambda s: ab_test(s, weight=100),
     ("spec.strategy.abTest.weight", "less than or equal to 99")),
    ("ab-without-duration", lambda s: ab_test(s, duration=None),
     ("spec.strategy.abTest.duration", "Required value")),
    ("ab-duration-malformed", lambda s: ab_test(s, duration="ten minutes"),
     ("spec.strategy.abTest.duration", "should match")),
    ("ab-duration-zero", lambda s: ab_test(s, duration="0s"),
     ("spec.strategy.abTest.duration", "duration must be above 0 and at most 168h")),
    ("ab-duration-beyond-a-week", lambda s: ab_test(s, duration="200h"),
     ("spec.strategy.abTest.duration", "duration must be above 0 and at most 168h")),
    ("ab-without-primary", lambda s: ab_test(s, primary=None),
     ("spec.strategy.abTest.primary", "Required value")),
    ("ab-primary-not-a-metric", lambda s: ab_test(s, primary="revenue"),
     ("spec.strategy.abTest.primary", "must name a metric of analysis.metrics that has compare")),
    ("ab-primary-a-threshold", lambda s: ab_test(s, primary="success-rate"),
     ("spec.strategy.abTest.primary", "must name a metric of analysis.metrics that has compare")),
    ("ab-primary-with-a-window", lambda s: ab_test(s, primary_window="1m"),
     ("spec.strategy.abTest.primary", "reads the whole test: it sets no window")),
    ("ab-stop-early-not-a-boolean", lambda s: ab_test(s, stopEarly="yes"),
     ("spec.strategy.abTest.stopEarly", "must be of type boolean")),
    ("ab-and-canary", lambda s: ab_test(s) or s["strategy"].update(canary={"steps": [{"setWeight": 10}]}),
     ("spec.strategy", "must have at most 1 item")),
    ("ab-with-steps", lambda s: ab_test(s, steps=[{"setWeight": 10}]),
     ("spec.strategy.abTest.steps", "unknown field")),
    # Shadows (spec.strategy.shadow)
    ("shadow-mirror-zero", lambda s: shadow(s, mirrorPercent=0),
     ("spec.strategy.shadow.mirrorPercent", "greater than or equal to 1")),
    ("shadow-mirror-above-100", lambda s: shadow(s, mirrorPercent=120),
     ("spec.strategy.shadow.mirrorPercent", "less than or equal to 100")),
    ("shadow-without-duration", lambda s: shadow(s, duration=None),
     ("spec.strategy.shadow.duration", "Required value")),
    ("shadow-duration-malformed", lambda s: shadow(s, duration="two minutes"),
     ("spec.strategy.shadow.duration", "should match")),
    ("shadow-duration-zero", lambda s: shadow(s, duration="0s"),
     ("spec.strategy.shadow.duration", "duration must be above 0 and at most 168h")),
    ("shadow-without-metrics", lambda s: shadow(s) or s["analysis"].pop("metrics"),
     ("spec.strategy.shadow", "a shadow is there to be measured")),
    ("shadow-ends-at-weight-zero", lambda s: shadow(s, steps=[{"setWeight": 20}, {"setWeight": 0}]),
     ("spec.strategy.shadow.steps", "the last setWeight of strategy.shadow.steps must give the candidate")),
    ("shadow-step-with-two-kinds", lambda s: shadow(s, steps=[{"setWeight": 20, "pause": {}}]),
     ("spec.strategy.shadow.steps[0]", "each step sets exactly one of setWeight, pause, analysis")),
    ("shadow-step-weight-above-100", lambda s: shadow(s, steps=[{"setWeight": 101}]),
     ("spec.strategy.shadow.steps[0].setWeight", "less than or equal to 100")),
    ("shadow-and-canary", lambda s: shadow(s) or s["strategy"].update(canary={"steps": [{"setWeight": 10}]}),
     ("spec.strategy", "must have at most 1 item")),
    ("agreement-outside-a-shadow", lambda s: s["analysis"]["metrics"].append(
        {"name": "agreement", "template": "shadow-agreement", "min": 0.9}),
     ("spec.analysis.metrics", "template shadow-agreement measures a shadow's answers")),
    ("shadow-unknown-field", lambda s: shadow(s, weight=10),
     ("spec.strategy.shadow.weight", "unknown field")),
    ("failure-limit-zero", lambda s: s["analysis"].update(failureLimit=0),
     ("spec.analysis.failureLimit", "greater than or equal to 1")),
    ("progress-deadline-negative", lambda s: s.update(progressDeadline="-10m"),
     ("spec.progressDeadline", "should match")),
]


def test_valid_rollout_is_accepted_with_defaults(cluster: Kube, namespace: str) -> None:
    obj = mutated(lambda s: s.pop("analysis"))
    cluster.create(obj, namespace)
    stored = cluster.get("mro", obj["metadata"]["name"], namespace)
    assert stored["spec"]["analysis"] == {"interval": "30s", "failureLimit": 2, "inconclusiveLimit": 4,
                                          "minRequests": 50}
    assert stored["spec"]["targetRef"]["apiVersion"] == "machinelearning.seldon.io/v1"
    assert stored["spec"]["progressDeadline"] == "10m"


def test_an_ab_test_is_accepted_with_its_defaults(cluster: Kube, namespace: str) -> None:
    obj = mutated(lambda s: ab_test(s, weight=None))
    cluster.create(obj, namespace)
    stored = cluster.get("mro", obj["metadata"]["name"], namespace)
    assert stored["spec"]["strategy"] == {"abTest": {"weight": 50, "duration": "10m", "primary": "accuracy",
                                                     "stopEarly": False}}


def test_a_shadow_is_accepted_with_its_defaults(cluster: Kube, namespace: str) -> None:
    obj = mutated(lambda s: shadow(s, mirrorPercent=None, steps=None))
    cluster.create(obj, namespace)
    stored = cluster.get("mro", obj["metadata"]["name"], namespace)
    assert stored["spec"]["strategy"] == {"shadow": {"mirrorPercent": 100, "duration": "2m"}}


def test_example_files_are_accepted(cluster: Kube, namespace: str) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        result = cluster.run("apply", "-n", namespace, "-f", str(path))
        assert "created" in result.stdout or "configured" in result.stdout, path


@pytest.mark.parametrize(("mutation", "expected"), [pytest.param(m, e, id=i) for i, m, e in INVALID])
def test_invalid_rollout_is_rejected_naming_the_field(
    cluster: Kube, namespace: str, mutation: Callable[[dict[str, Any]], None], expected: tuple[str, ...]
) -> None:
    result = cluster.create(mutated(mutation), namespace, check=False)
    assert result.returncode != 0, "the API server accepted an invalid ModelRollout"
    for text in expected:
        assert text in result.stderr, f"{text!r} not in the API server's message: {result.stderr}"
    assert "mro" not in cluster.run("get", "mro", "-n", namespace, "-o", "name").stdout


def test_invalid_cases_are_distinct() -> None:
    assert len({case for case, _, _ in INVALID}) == len(INVALID) >= 12
    specs = [yaml.safe_dump(mutated(m)["spec"]) for _, m, _ in INVALID]
    assert len(set(specs)) == len(specs)


def test_analysis_template_crd(cluster: Kube, namespace: str) -> None:
    good = {"apiVersion": "modelrollout.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": "errors"},
            "spec": {"query": "sum(rate(x[{{interval}}]))"}}
    cluster.create(good, namespace)
    assert cluster.get("analysistemplate", "errors", namespace)["spec"]["provider"] == {"type": "prometheus"}
    bad = copy.deepcopy(good)
    bad["metadata"]["name"] = "no-query"
    bad["spec"] = {"description": "forgot the query"}
    result = cluster.create(bad, namespace, check=False)
    assert result.returncode != 0 and "a template declares a query (one number), a proportion" in result.stderr
    comparable = copy.deepcopy(good)
    comparable["metadata"]["name"] = "accuracy"
    comparable["spec"] = {"proportion": {"successes": "sum(increase(ok[{{interval}}]))",
                                         "trials": "sum(increase(all[{{interval}}]))"}}
    cluster.create(comparable, namespace)  # a template that only compares needs no query
    half = copy.deepcopy(comparable)
    half["metadata"]["name"] = "half"
    half["spec"] = {"proportion": {"successes": "sum(increase(ok[{{interval}}]))"}}
    result = cluster.create(half, namespace, check=False)
    assert result.returncode != 0 and "spec.proportion.trials" in result.stderr


def crd_names() -> dict[str, dict[str, Any]]:
    """spec.names of every CRD in crds/, by CRD name."""
    docs = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]
    return {d["metadata"]["name"]: d["spec"]["names"] for d in docs}


def test_no_category_is_also_a_resource_name() -> None:
    """kubectl expands a category before it looks the word up as a resource, so a category spelled like a kind's
    singular, plural or short name turns `kubectl delete <that name> NAME` into a command on several kinds."""
    names = crd_names()
    spelled = {n.lower() for spec in names.values()
               for n in (spec["kind"], spec["singular"], spec["plural"], *spec.get("shortNames", ()))}
    for crd, spec in names.items():
        assert not set(spec.get("categories", ())) & spelled, (crd, spec["categories"])
    # The "rollouts" category names ModelRollouts only: commands on one named object stay on one kind.
    owners = [crd for crd, spec in names.items() if "rollouts" in spec.get("categories", ())]
    assert owners == ["modelrollouts.modelrollout.dev"]


def test_kubectl_acts_on_a_modelrollout_named_by_its_singular(cluster: Kube, namespace: str,
                                                               tmp_path: Path) -> None:
    """`kubectl annotate modelrollout NAME` and `kubectl delete modelrollout NAME` reach exactly that object,
    even with an AnalysisTemplate of the same name next to it."""
    obj = model_rollout(name_prefix="r")
    name = obj["metadata"]["name"]
    cluster.create(obj, namespace)
    cluster.create({"apiVersion": "modelrollout.dev/v1alpha1", "kind": "AnalysisTemplate", "metadata": {"name": name},
                    "spec": {"query": "sum(rate(x[{{interval}}]))"}}, namespace)
    # A fresh discovery cache: what kubectl resolves comes from the API server's CRDs as they are now.
    kubectl = ("--cache-dir", str(tmp_path / "kube-cache"), "-n", namespace)

    annotated = cluster.run(*kubectl, "annotate", "modelrollout", name, "x=y", check=False)
    assert annotated.returncode == 0, annotated.stderr
    assert annotated.stdout.split() == [f"modelrollout.modelrollout.dev/{name}", "annotated"], annotated.stdout
    assert cluster.get("mro", name, namespace)["metadata"]["annotations"]["x"] == "y"
    assert "x" not in (cluster.get("analysistemplate", name, namespace)["metadata"].get("annotations") or {})

    # The category still lists ModelRollouts.
    listed = cluster.run(*kubectl, "get", "rollouts", "-o", "name").stdout.split()
    assert listed == [f"modelrollout.modelrollout.dev/{name}"], listed

    deleted = cluster.run(*kubectl, "delete", "modelrollout", name, "--timeout=30s", check=False)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.startswith(f'modelrollout.modelrollout.dev "{name}" deleted'), deleted.stdout
    assert "analysistemplate" not in deleted.stdout, deleted.stdout
    assert cluster.run(*kubectl, "get", "modelrollout", name, check=False).returncode != 0
    cluster.get("analysistemplate", name, namespace)  # the template of the same name is untouched
