"""examples/analysistemplate-accuracy.yaml evaluated by Prometheus's own engine (``promtool test rules``).

The query is rendered the way the operator renders it (``AnalysisContext.from_spec`` and ``render_query``)
for a rollout of candidate version 2.1.0-degraded, and fed series shaped like the model servers':
``feedback_outcomes_total`` with ``served_model_version`` (the version that produced the judged answer),
``outcome``, seldon-core's labels and the scrape's namespace / deployment_name / predictor_name. Feedback is
routed as Seldon Core v1 routes it, by traffic weight: most of the candidate's feedback reaches the stable
predictor's servers, which also count feedback on their own answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelrollout.analysis import AnalysisContext, render_query
from modelrollout.api import Limits, RolloutSpec

from tests.unit.test_promql_rules import run_promtool

TEMPLATE_FILE = Path(__file__).resolve().parents[2] / "examples" / "analysistemplate-accuracy.yaml"
NAMESPACE, TARGET, STABLE, CANDIDATE = "models", "digits", "main", "main-candidate"
STABLE_VERSION, CANDIDATE_VERSION = "1.0.0", "2.1.0-degraded"
METRIC = "feedback_outcomes_total"
RECORD = "modelrollout:feedback_accuracy"


def rendered(window_s: float = 15.0) -> str:
    spec = RolloutSpec.parse({
        "targetRef": {"kind": "SeldonDeployment", "name": TARGET},
        "stablePredictor": STABLE,
        "candidate": {"modelUri": f"file:///models/digits/{CANDIDATE_VERSION}", "version": CANDIDATE_VERSION},
        "strategy": {"canary": {"steps": [{"setWeight": 10}]}},
        "analysis": {"interval": "15s", "metrics": [
            {"name": "accuracy", "templateRef": {"name": "feedback-accuracy"}, "min": 0.9}]},
    }, Limits(scrape_interval_s=1))
    template = yaml.safe_load(TEMPLATE_FILE.read_text())["spec"]["query"]
    return render_query(template, AnalysisContext.from_spec(spec, NAMESPACE).variables(window_s))


@dataclass(frozen=True)
class Outcomes:
    """What one model-server process counts per scrape: feedback outcomes on answers of `version`."""

    predictor: str
    version: str
    correct: int
    incorrect: int
    namespace: str = NAMESPACE
    deployment: str = TARGET
    worker: str = "101"

    def series(self, grows: int, flat: int) -> list[dict[str, str]]:
        own = STABLE_VERSION if self.predictor == STABLE else CANDIDATE_VERSION
        out = []
        for outcome, step in (("correct", self.correct), ("incorrect", self.incorrect)):
            if not step:
                continue  # the server sends no zero-valued counter: that series does not exist
            labels = (f'namespace="{self.namespace}",deployment_name="{self.deployment}",'
                      f'predictor_name="{self.predictor}",exported_predictor_name="{self.predictor}",'
                      f'artifact_version="{own}",served_model_version="{self.version}",outcome="{outcome}",'
                      f'method="feedback",model_version="NOT_IMPLEMENTED",worker_id="{self.worker}"')
            values = f"0+{step}x{grows}" + (f" {step * grows}+0x{flat - 1}" if flat else "")
            out.append({"series": f"{METRIC}{{{labels}}}", "values": values})
        return out


# Never the candidate's: the stable model's own answers (on both predictors: feedback follows the weights),
# answers that named no version, and the same version in another namespace and another deployment.
NOISE = (
    Outcomes(STABLE, STABLE_VERSION, correct=88, incorrect=12),
    Outcomes(CANDIDATE, STABLE_VERSION, correct=9, incorrect=1),
    Outcomes(STABLE, "unknown", correct=1, incorrect=30),
    Outcomes(CANDIDATE, "unknown", correct=0, incorrect=7),
    Outcomes(STABLE, CANDIDATE_VERSION, correct=100, incorrect=0, namespace="other"),
    Outcomes(STABLE, CANDIDATE_VERSION, correct=100, incorrect=0, deployment="iris"),
)


class NoData:
    def __repr__(self) -> str:
        return "empty"


class NoNumber:
    def __repr__(self) -> str:
        return "NaN or empty"


EMPTY, NOT_A_NUMBER = NoData(), NoNumber()


@dataclass(frozen=True)
class Case:
    name: str
    outcomes: tuple[Outcomes, ...]
    expected: float | NoData | NoNumber
    grows: int = 90
    flat: int = 0
    eval_time: str = "60s"


CASES = [
    # 10% canary: 45 of the candidate's judged answers a second reach the stable servers (36 right), 5 its
    # own (4 right), in two workers of one server: 40 / 50.
    Case("canary, feedback routed by weight: the candidate's accuracy wherever it landed",
         (Outcomes(STABLE, CANDIDATE_VERSION, correct=20, incorrect=5, worker="101"),
          Outcomes(STABLE, CANDIDATE_VERSION, correct=16, incorrect=4, worker="102"),
          Outcomes(CANDIDATE, CANDIDATE_VERSION, correct=4, incorrect=1), *NOISE),
         0.8),
    Case("feedback routed to the predictor that answered: the same number",
         (Outcomes(CANDIDATE, CANDIDATE_VERSION, correct=40, incorrect=10), *NOISE), 0.8),
    Case("every judged answer wrong: accuracy 0, a failure, not no data",
         (Outcomes(STABLE, CANDIDATE_VERSION, correct=0, incorrect=45),
          Outcomes(CANDIDATE, CANDIDATE_VERSION, correct=0, incorrect=5), *NOISE),
         0.0),
    Case("no feedback on the candidate's answers, plenty on others: no data, never a pass",
         NOISE, EMPTY),
    Case("nothing at all: no data", (), EMPTY),
    Case("feedback stopped: flat counters give no number",
         (Outcomes(STABLE, CANDIDATE_VERSION, correct=36, incorrect=9), *NOISE),
         NOT_A_NUMBER, grows=30, flat=60, eval_time="75s"),
]


def assertion(expected: float | NoData | NoNumber, eval_time: str) -> dict[str, Any]:
    if isinstance(expected, NoData):
        return {"expr": RECORD, "eval_time": eval_time, "exp_samples": []}
    if isinstance(expected, NoNumber):
        return {"expr": f"{RECORD} == {RECORD}", "eval_time": eval_time, "exp_samples": []}
    return {"expr": f"round({RECORD}, 0.0001)", "eval_time": eval_time,
            "exp_samples": [{"labels": "{}", "value": expected}]}


@pytest.mark.parametrize("case", CASES, ids=[c.name.split(":")[0] for c in CASES])
def test_accuracy_template_under_promtool(case: Case, tmp_path: Path) -> None:
    rules = {"groups": [{"name": "accuracy", "interval": "15s", "rules": [{"record": RECORD, "expr": rendered()}]}]}
    series = [s for o in case.outcomes for s in o.series(case.grows, case.flat)]
    if not series:  # promtool wants some input
        series = [{"series": 'up{job="model-servers"}', "values": "1+0x90"}]
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": [{
        "name": case.name, "interval": "1s", "input_series": series,
        "promql_expr_test": [assertion(case.expected, case.eval_time)]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False, width=1000))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    checked = run_promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, f"promtool check rules failed:\n{checked.stdout}\n{checked.stderr}"
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "SUCCESS" in output, f"{case.name}:\n{output}\nquery:\n{rendered()}"


def test_the_template_keys_on_the_candidate_version_not_on_a_predictor() -> None:
    query = rendered()
    assert query.count(f'served_model_version="{CANDIDATE_VERSION}"') == 2
    assert "predictor_name" not in query
    assert query.count(f'namespace="{NAMESPACE}",deployment_name="{TARGET}"') == 2
    assert "{{" not in query and "[15s]" in query


def test_the_harness_reports_a_wrong_expectation(tmp_path: Path) -> None:
    wrong = Case("canary, expected wrongly", CASES[0].outcomes, 0.9)
    with pytest.raises(AssertionError, match=r"(?i)failed"):
        test_accuracy_template_under_promtool(wrong, tmp_path)
