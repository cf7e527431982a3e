"""The builtin shadow-agreement template evaluated by Prometheus's own engine (``promtool test rules``).

Its value and its two counts are rendered the way the operator renders them for a shadow candidate, and fed
series shaped like the local data plane's comparing mirror (``dataplane_mirror_answers_total`` with
deployment_name, predictor_name (the shadow), live_predictor_name and outcome, served with the namespace's
executor series, so the scrape adds ``namespace``), including the empty and the all-disagreeing cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelrollout.analysis import AnalysisContext
from modelrollout.analysis.runner import CheckQuery, render_check_query
from modelrollout.api import Limits, RolloutSpec, SpecError
from modelrollout.backends.seldon_v1_queries import BUILTIN_TEMPLATES
from modelrollout.templates import Part

from tests.unit.grouped_rules import with_grouped
from tests.unit.test_promql_rules import run_promtool

NAMESPACE, TARGET, STABLE, SHADOW = "models", "digits", "main", "main-candidate"
METRIC = "dataplane_mirror_answers_total"


def rendered(window_s: float = 15.0) -> dict[str, CheckQuery]:
    spec = RolloutSpec.parse({
        "targetRef": {"kind": "SeldonDeployment", "name": TARGET},
        "stablePredictor": STABLE,
        "candidate": {"modelUri": "file:///models/digits/2.2.0-biased", "version": "2.2.0-biased"},
        "strategy": {"shadow": {"duration": "1m"}},
        "analysis": {"interval": "15s", "metrics": [{"name": "agreement", "template": "shadow-agreement",
                                                      "min": 0.9}]},
    }, Limits(scrape_interval_s=1))
    variables = AnalysisContext.from_spec(spec, NAMESPACE).variables(window_s)
    template = BUILTIN_TEMPLATES["shadow-agreement"]
    assert template.proportion is not None
    return {"value": render_check_query(template, Part.VALUE, variables),
            "agree": render_check_query(template, Part.SUCCESSES, variables),
            "compared": render_check_query(template, Part.TRIALS, variables)}


@dataclass(frozen=True)
class Rows:
    """Rows the mirror compared per second for one (shadow, live predictor, outcome)."""

    outcome: str
    per_second: int
    predictor: str = SHADOW
    namespace: str = NAMESPACE
    deployment: str = TARGET

    def series(self, grows: int, flat: int) -> dict[str, str]:
        labels = (f'namespace="{self.namespace}",job="dataplane",deployment_name="{self.deployment}",'
                  f'predictor_name="{self.predictor}",live_predictor_name="{STABLE}",outcome="{self.outcome}"')
        values = f"0+{self.per_second}x{grows}" + (f" {self.per_second * grows}+0x{flat - 1}" if flat else "")
        return {"series": f"{METRIC}{{{labels}}}", "values": values}


# outcome is agree, disagree or error (the shadow failed where the live model answered).
# Never this shadow's: another namespace's and another deployment's shadows of the same predictor name.
NOISE = (Rows("disagree", 50, namespace="other"), Rows("disagree", 50, deployment="iris"),
         Rows("agree", 0, namespace="other"))

EMPTY = None


@dataclass(frozen=True)
class Case:
    name: str
    rows: tuple[Rows, ...]
    value: float | None  # None: no number (empty, or NaN)
    agree: float | None
    compared: float | None
    grows: int = 90
    flat: int = 0
    eval_time: str = "60s"


CASES = [
    Case("shadow agrees on 9 rows in 10", (Rows("agree", 36), Rows("disagree", 4), *NOISE), 0.9, 540, 600),
    Case("the shadow failed a quarter of the rows the live model answered: they count as trials",
         (Rows("agree", 30), Rows("disagree", 0), Rows("error", 10), *NOISE), 0.75, 450, 600),
    Case("every row disagrees, agree series at 0: 0, a failure, not no data",
         (Rows("agree", 0), Rows("disagree", 40), *NOISE), 0.0, 0, 600),
    Case("every row disagrees, no agree series at all: still 0", (Rows("disagree", 40), *NOISE), 0.0, 0, 600),
    Case("no comparisons for this shadow (a real Istio mirror): no data, never a pass", NOISE, None, None, None),
    Case("nothing at all: no data", (), None, None, None),
    Case("mirroring stopped: flat counters give no number", (Rows("agree", 36), Rows("disagree", 4)),
         None, 0, 0, grows=30, flat=60, eval_time="75s"),
]


def assertion(record: str, expected: float | None, eval_time: str) -> dict[str, Any]:
    if expected is None:  # empty, or NaN (NaN != NaN drops it)
        return {"expr": f"{record} == {record}", "eval_time": eval_time, "exp_samples": []}
    return {"expr": f"round({record}, 0.0001)", "eval_time": eval_time,
            "exp_samples": [{"labels": "{}", "value": expected}]}


@pytest.mark.parametrize("case", CASES, ids=[c.name.split(":")[0] for c in CASES])
def test_shadow_agreement_template_under_promtool(case: Case, tmp_path: Path) -> None:
    queries = {f"modelrollout:shadow_{part}": query for part, query in rendered().items()}
    series = [r.series(case.grows, case.flat) for r in case.rows]
    if not series:  # promtool wants some input
        series = [{"series": 'up{job="dataplane"}', "values": "1+0x90"}]
    recorded, checks = with_grouped(
        [{"record": record, "expr": query.text} for record, query in queries.items()],
        [assertion("modelrollout:shadow_value", case.value, case.eval_time),
         assertion("modelrollout:shadow_agree", case.agree, case.eval_time),
         assertion("modelrollout:shadow_compared", case.compared, case.eval_time)], queries)
    rules = {"groups": [{"name": "agreement", "interval": "15s", "rules": recorded}]}
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": [{
        "name": case.name, "interval": "1s", "input_series": series, "promql_expr_test": checks}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False, width=1000))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False, width=1000))
    checked = run_promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert checked.returncode == 0, f"promtool check rules failed:\n{checked.stdout}\n{checked.stderr}"
    result = run_promtool("test", "rules", "tests.yml", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "SUCCESS" in output, f"{case.name}:\n{output}\nqueries:\n{queries}"


def test_the_harness_reports_a_wrong_expectation(tmp_path: Path) -> None:
    wrong = Case("agrees, expected wrongly", CASES[0].rows, 0.8, 540, 600)
    with pytest.raises(AssertionError, match=r"(?i)failed"):
        test_shadow_agreement_template_under_promtool(wrong, tmp_path)


def test_agreement_cannot_be_compared_with_the_stable_model() -> None:
    """The stable model has no agreement of its own: compare on this template is refused at parse time."""
    with pytest.raises(SpecError, match="cannot be compared with the stable model"):
        RolloutSpec.parse({
            "targetRef": {"kind": "SeldonDeployment", "name": TARGET}, "stablePredictor": STABLE,
            "candidate": {"modelUri": "file:///models/digits/2.0.0", "version": "2.0.0"},
            "strategy": {"shadow": {"duration": "1m"}},
            "analysis": {"metrics": [{"name": "agreement", "template": "shadow-agreement",
                                      "compare": {"tolerance": 0.01}}]},
        }, Limits(scrape_interval_s=1))
