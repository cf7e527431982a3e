"""The builtin templates' comparison queries (counts over the window, candidate and stable alike) evaluated
by Prometheus's own engine (``promtool test rules``), on series shaped like the Seldon executor's and the
model server's: a healthy mix, all errors, nothing at all, and the stable side rendered by the same template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from modelrollout.analysis import AnalysisContext
from modelrollout.analysis.runner import CheckQuery, render_check_query
from modelrollout.backends.seldon_v1_queries import BUILTIN_TEMPLATES
from modelrollout.templates import MetricTemplate, Part

from tests.unit.grouped_rules import with_grouped
from tests.unit.test_promql_rules import (
    CANDIDATE,
    KNOWN,
    MIXED,
    NAMESPACE,
    NOISE,
    STABLE,
    TARGET,
    Traffic,
    run_promtool,
    spec,
)

WINDOW_S = 15.0  # the default window at a 1s scrape and a 15s interval
EVAL = "60s"
STABLE_VERSION, CANDIDATE_VERSION = "1.0.0", "2.0.0"
CONTEXT = AnalysisContext.from_spec(spec("15s", scrape_interval_s=1.0), NAMESPACE, stable_version=STABLE_VERSION)


def model_series(metric: str, version: str, predictor: str, per_scrape: int, **labels: str) -> dict[str, str]:
    """A model server counter as seldon-core exports it and the scrape labels it, growing for 90 scrapes."""
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return {"series": f'{metric}{{namespace="{NAMESPACE}",deployment_name="{TARGET}",predictor_name="{predictor}",'
                      f'model_name="classifier",served_model_version="{version}"{extra}}}',
            "values": f"0+{per_scrape}x90"}


def rendered(template: MetricTemplate) -> dict[str, CheckQuery]:
    """Every comparison query of a template, for the candidate and (by the same template) the stable, alone
    and in its grouped form."""
    out: dict[str, CheckQuery] = {}
    sides = (("candidate", CONTEXT.variables(WINDOW_S)), ("stable", CONTEXT.baseline_variables(WINDOW_S)))
    for side, variables in sides:
        if template.proportion is not None:
            out[f"{side}:successes"] = render_check_query(template, Part.SUCCESSES, variables)
            out[f"{side}:trials"] = render_check_query(template, Part.TRIALS, variables)
        if template.histogram is not None:
            out[f"{side}:counts"] = render_check_query(template, Part.BUCKETS, variables)
        if template.distribution is not None:
            out[f"{side}:counts"] = render_check_query(template, Part.CLASSES, variables)
    return out


def evaluate(template: str, series: list[dict[str, str]], expected: dict[str, list[dict[str, Any]]],
             tmp_path: Path) -> None:
    queries = rendered(BUILTIN_TEMPLATES[template])
    assert set(expected) == set(queries), f"an expectation for every query of {template}"
    record = {name: "cmp:" + name.replace(":", "_") for name in queries}
    recorded, assertions = with_grouped(
        [{"record": record[n], "expr": q.text} for n, q in queries.items()],
        [{"expr": f"round({record[n]}, 0.0001)", "eval_time": EVAL, "exp_samples": samples}
         for n, samples in expected.items()], {record[n]: q for n, q in queries.items()})
    rules = {"groups": [{"name": "comparisons", "interval": "15s", "rules": recorded}]}
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": [{
        "interval": "1s", "input_series": series, "promql_expr_test": assertions}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False, width=1000))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    checked = run_promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout + result.stderr, (
        f"{template}: promtool test rules failed:\n{result.stdout}{result.stderr}\n{yaml.safe_dump(rules)}")


def one(value: float) -> list[dict[str, Any]]:
    return [{"labels": "{}", "value": value}]


NONE: list[dict[str, Any]] = []


@pytest.mark.parametrize("traffic, expected", [
    # 95 of 100 candidate requests a scrape succeed; the stable answers 100 and fails 20 more (503s).
    ((*MIXED, *NOISE), {"candidate:successes": one(1425), "candidate:trials": one(1500),
                        "stable:successes": one(1500), "stable:trials": one(1800)}),
    # Every candidate request failed: 0 successes (not no data) out of 1500.
    ((Traffic(CANDIDATE, {0.01: 60}, code="500"), Traffic(CANDIDATE, {0.025: 40}, code="503"), *NOISE),
     {"candidate:successes": one(0), "candidate:trials": one(1500),
      "stable:successes": one(1500), "stable:trials": one(1800)}),
    # The candidate has no series at all: no data on either count.
    (NOISE[:3], {"candidate:successes": NONE, "candidate:trials": NONE,
                 "stable:successes": one(1500), "stable:trials": one(1800)}),
], ids=["mixed", "all errors", "no candidate series"])
def test_request_success_counts_for_both_sides(traffic: tuple[Traffic, ...], expected: dict[str, Any],
                                               tmp_path: Path) -> None:
    series = [s for t in traffic for s in t.series(90, 0)]
    evaluate("request-success-rate", series, expected, tmp_path)


def test_latency_buckets_by_le_for_both_sides(tmp_path: Path) -> None:
    series = [s for t in (Traffic(CANDIDATE, KNOWN), *NOISE) for s in t.series(90, 0)]
    cumulative, running = {}, 0
    for bound in (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0):
        running += KNOWN.get(bound, 0)
        cumulative[f"{bound:g}"] = running * 15
    candidate = [{"labels": f'{{le="{le}"}}', "value": v} for le, v in cumulative.items()]
    candidate.append({"labels": '{le="+Inf"}', "value": 1500})
    # The stable (SLOW: 50 up to 2.5s, 50 up to 10s a scrape, plus its 503s at the same latencies).
    stable_counts = {"2.5": (50 + 10) * 15, "5": (50 + 10) * 15, "7.5": (50 + 10) * 15, "10": 120 * 15}
    stable = [{"labels": f'{{le="{le}"}}', "value": stable_counts.get(le, 0)}
              for le in (*cumulative, "+Inf") if le != "+Inf"] + [{"labels": '{le="+Inf"}', "value": 1800}]
    evaluate("request-duration-p99", series, {"candidate:counts": candidate, "stable:counts": stable}, tmp_path)


def test_feedback_counts_by_model_version_wherever_the_feedback_landed(tmp_path: Path) -> None:
    series = [
        # Feedback on the candidate's answers, mostly on the stable predictor's servers (routed by weight).
        model_series("feedback_outcomes_total", CANDIDATE_VERSION, STABLE, 8, outcome="correct"),
        model_series("feedback_outcomes_total", CANDIDATE_VERSION, STABLE, 2, outcome="wrong"),
        model_series("feedback_outcomes_total", CANDIDATE_VERSION, CANDIDATE, 1, outcome="correct"),
        model_series("feedback_outcomes_total", STABLE_VERSION, STABLE, 95, outcome="correct"),
        model_series("feedback_outcomes_total", STABLE_VERSION, STABLE, 5, outcome="wrong"),
        model_series("feedback_outcomes_total", "unknown", STABLE, 7, outcome="wrong"),
    ]
    evaluate("model-accuracy", series, {"candidate:successes": one(135), "candidate:trials": one(165),
                                        "stable:successes": one(1425), "stable:trials": one(1500)}, tmp_path)


def test_feedback_that_found_every_answer_wrong_is_zero_correct_and_none_is_no_data(tmp_path: Path) -> None:
    series = [model_series("feedback_outcomes_total", CANDIDATE_VERSION, STABLE, 4, outcome="wrong")]
    evaluate("model-accuracy", series, {"candidate:successes": one(0), "candidate:trials": one(60),
                                        "stable:successes": NONE, "stable:trials": NONE}, tmp_path)


def test_predicted_classes_by_version_for_both_sides(tmp_path: Path) -> None:
    series = [model_series("predictions_total", CANDIDATE_VERSION, CANDIDATE, 3, **{"class": "7"}),
              model_series("predictions_total", CANDIDATE_VERSION, CANDIDATE, 1, **{"class": "1"}),
              model_series("predictions_total", STABLE_VERSION, STABLE, 5, **{"class": "7"}),
              model_series("predictions_total", STABLE_VERSION, STABLE, 5, **{"class": "1"}),
              model_series("predictions_total", STABLE_VERSION, CANDIDATE, 2, **{"class": "1"})]
    evaluate("prediction-distribution", series, {
        "candidate:counts": [{"labels": '{class="1"}', "value": 15}, {"labels": '{class="7"}', "value": 45}],
        "stable:counts": [{"labels": '{class="1"}', "value": 105}, {"labels": '{class="7"}', "value": 75}]},
        tmp_path)


def evaluate_value(template: str, series: list[dict[str, str]], expected: list[dict[str, Any]],
                   tmp_path: Path) -> None:
    query = render_check_query(BUILTIN_TEMPLATES[template], Part.VALUE, CONTEXT.variables(WINDOW_S))
    recorded, assertions = with_grouped(
        [{"record": "value:x", "expr": query.text}],
        [{"expr": "round(value:x, 0.0001)", "eval_time": EVAL, "exp_samples": expected}], {"value:x": query})
    rules = {"groups": [{"name": "values", "interval": "15s", "rules": recorded}]}
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": [{
        "interval": "1s", "input_series": series, "promql_expr_test": assertions}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False, width=1000))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout + result.stderr, (
        f"{template}: promtool test rules failed:\n{result.stdout}{result.stderr}\n{query}")


def class_feedback(true_class: str, correct: int, incorrect: int, version: str = CANDIDATE_VERSION,
                   ) -> list[dict[str, str]]:
    out = []
    for outcome, per_scrape in (("correct", correct), ("incorrect", incorrect)):
        if per_scrape:
            out.append(model_series("feedback_class_outcomes_total", version, STABLE, per_scrape,
                                    outcome=outcome, true_class=true_class))
    return out


@pytest.mark.parametrize("series, expected", [
    # Class 3 is answered right 1 time in 4, class 7 always: the floor is class 3's 0.25.
    ([*class_feedback("3", 1, 3), *class_feedback("7", 4, 0), *class_feedback("3", 0, 9, version=STABLE_VERSION)],
     one(0.25)),
    # A class the candidate never gets right has no "correct" series: its recall is 0, not missing.
    ([*class_feedback("3", 0, 4), *class_feedback("7", 4, 0)], one(0)),
    # No feedback on the candidate's answers (only the stable's): no data, never a pass.
    (class_feedback("3", 5, 0, version=STABLE_VERSION), NONE),
], ids=["worst class", "a class never right", "no feedback"])
def test_class_recall_is_the_worst_classs_recall(series: list[dict[str, str]], expected: list[dict[str, Any]],
                                                 tmp_path: Path) -> None:
    evaluate_value("class-recall", series, expected, tmp_path)
