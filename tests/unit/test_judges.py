"""Judges through the check runner: a comparison with the stable model and a threshold on an interval,
from the provider's answers to the verdict and the message a person reads."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from modelrollout.analysis import AnalysisContext, QueryOutcome, StaticTemplates, run_checks
from modelrollout.api import Compare, JudgeKind, Metric, RolloutSpec, SpecError
from modelrollout.status import CheckRecord, Verdict
from modelrollout.templates import DistributionQuery, MetricTemplate, ProportionQueries

CONTEXT = AnalysisContext(namespace="models", target="digits", stable="main", candidate="main-candidate",
                          default_window_s=30.0, candidate_version="2.0.0", stable_version="1.0.0")
CAND, STAB = '"2.0.0"', '"1.0.0"'  # accuracy keys on the model version, not the predictor


class Provider:
    """Counts and series by side: answers a query by which version or predictor it names."""

    def __init__(self, candidate: dict[str, object], stable: dict[str, object]) -> None:
        self.sides = {"candidate": candidate, "stable": stable}

    def _side(self, promql: str) -> dict[str, object]:
        if CAND in promql or 'predictor_name="main-candidate"' in promql:
            return self.sides["candidate"]
        return self.sides["stable"]

    async def query(self, promql: str) -> QueryOutcome:
        side = self._side(promql)
        key = "successes" if 'outcome="correct"' in promql or "code!~" in promql else "trials"
        value = side.get(key)
        return QueryOutcome.no_data("empty") if value is None else QueryOutcome.number(float(value))  # type: ignore[arg-type]

    async def query_by(self, promql: str, label: str) -> QueryOutcome:
        series = self._side(promql).get(label)
        return QueryOutcome.no_data("empty") if series is None else QueryOutcome.by_label(series)  # type: ignore[arg-type]


def judged(metric: Metric, candidate: dict[str, object], stable: dict[str, object]) -> CheckRecord:
    return asyncio.run(run_checks([metric], CONTEXT, Provider(candidate, stable), StaticTemplates()))[0]


ACCURACY = Metric(name="accuracy", template="model-accuracy", judge=JudgeKind.COMPARE,
                  compare=Compare(tolerance=0.02, min_samples=100))


def test_a_clearly_worse_model_fails_and_the_message_states_effect_interval_samples_and_window() -> None:
    result = judged(ACCURACY, {"successes": 354, "trials": 412}, {"successes": 3754, "trials": 3870})
    assert result.verdict is Verdict.FAIL
    assert result.message.startswith("accuracy 0.86 vs stable 0.97 (n=412/3,870): worse by 0.11, 95% CI [")
    assert result.message.endswith("tolerated 0.02 over 30s")
    assert (round(result.value or 0, 3), round(result.baseline or 0, 3)) == (0.859, 0.970)


def test_an_equal_model_with_enough_samples_passes() -> None:
    result = judged(ACCURACY, {"successes": 9700, "trials": 10000}, {"successes": 9690, "trials": 10000})
    assert result.verdict is Verdict.PASS, result.message


def test_too_few_samples_on_one_side_is_inconclusive_with_the_counts() -> None:
    result = judged(ACCURACY, {"successes": 40, "trials": 40}, {"successes": 3754, "trials": 3870})
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "n=40/3,870" in result.message and "fewer than minSamples 100 on a side" in result.message


def test_no_stable_data_is_inconclusive_never_a_pass() -> None:
    result = judged(ACCURACY, {"successes": 400, "trials": 400}, {})
    assert result.verdict is Verdict.INCONCLUSIVE and "stable: empty" in result.message


def test_a_slow_tail_fails_a_p99_comparison_that_a_rank_test_would_pass() -> None:
    """10% of the candidate's requests at 2.5-5s: its p99 is seconds while its median is the stable's. The
    p99 template compares the p99 (the candidate's share above the stable's p99 +20%), not the median."""
    p99 = Metric(name="latency-p99", template="request-duration-p99", judge=JudgeKind.COMPARE,
                 compare=Compare(tolerance=0.2, min_samples=500))
    stable = {"le": {"0.025": 0.0, "0.05": 1000.0, "2.5": 1000.0, "5": 1000.0, "+Inf": 1000.0}}
    tail = {"le": {"0.025": 0.0, "0.05": 900.0, "2.5": 900.0, "5": 1000.0, "+Inf": 1000.0}}
    result = judged(p99, tail, stable)
    assert result.verdict is Verdict.FAIL, result.message
    assert "10% of its requests above stable p99 +20%" in result.message and "binomial p<0.0001" in result.message
    assert judged(p99, stable, stable).verdict is Verdict.PASS
    few = {"le": {k: v / 10 for k, v in tail["le"].items()}}  # 100 requests: a p99 tail cannot show
    assert judged(replace(p99, compare=Compare(tolerance=0.2, min_samples=50)), few, stable).verdict \
        is Verdict.INCONCLUSIVE


def test_a_histogram_template_without_a_quantile_compares_whole_distributions_by_rank() -> None:
    latency = Metric(name="latency", template_ref="latency", judge=JudgeKind.COMPARE,
                     compare=Compare(tolerance=0.2, min_samples=50))
    template = MetricTemplate(histogram=DistributionQuery(
        counts='sum by (le) (h{predictor_name="{{candidate}}"}[{{interval}}])', by="le"))
    templates = StaticTemplates({("models", "latency"): template})
    stable = {"le": {"0.05": 100.0, "0.1": 600.0, "0.25": 1000.0, "+Inf": 1000.0}}
    slow = {"le": {"0.05": 0.0, "0.1": 50.0, "0.25": 400.0, "+Inf": 400.0}}
    result = asyncio.run(run_checks([latency], CONTEXT, Provider({"le": slow["le"]}, stable), templates))[0]
    assert result.verdict is Verdict.FAIL and "one-sided Mann-Whitney p" in result.message, result.message
    same = {"le": {"0.05": 40.0, "0.1": 240.0, "0.25": 400.0, "+Inf": 400.0}}
    assert asyncio.run(run_checks([latency], CONTEXT, Provider(same, stable), templates))[0].verdict is Verdict.PASS


def test_a_class_the_candidate_never_predicts_is_drift() -> None:
    drift = Metric(name="drift", template="prediction-distribution", judge=JudgeKind.COMPARE,
                   compare=Compare(max_psi=0.2, max_js=0.1, min_samples=100))
    even = {str(c): 100.0 for c in range(10)}
    blind = {**even, "8": 0.0, "3": 200.0}
    result = judged(drift, {"class": blind}, {"class": even})
    assert result.verdict is Verdict.FAIL, result.message
    assert "class '8'" in result.message or "class '3'" in result.message  # the two classes that moved
    assert judged(drift, {"class": even}, {"class": even}).verdict is Verdict.PASS


@pytest.mark.parametrize("successes, trials, verdict", [
    (39, 40, Verdict.INCONCLUSIVE),  # 0.975 < 0.99, but 40 requests cannot tell: no false failure
    (960, 1000, Verdict.FAIL),  # the whole interval is below 0.99
    (99_950, 100_000, Verdict.PASS),  # the whole interval is above 0.99
])
def test_a_threshold_on_the_interval_fails_only_when_the_evidence_does(successes: int, trials: int,
                                                                       verdict: Verdict) -> None:
    metric = Metric(name="success-rate", template="request-success-rate", min=0.99, confidence=0.95)
    result = judged(metric, {"successes": successes, "trials": trials}, {})
    assert result.verdict is verdict, result.message
    assert f"(n={trials:,})" in result.message and "95% interval [" in result.message


# --------------------------------------------------------------------------------------------------
# Nothing a template, a provider or a judge does makes run_checks raise, or compares a model with itself


class SeriesAnswers:
    def __init__(self, series: dict[str, float]) -> None:
        self.series = series

    async def query(self, promql: str) -> QueryOutcome:
        return QueryOutcome.number(1000.0)

    async def query_by(self, promql: str, label: str) -> QueryOutcome:
        return QueryOutcome.by_label(self.series)


def _ref(name: str, **compare: float) -> Metric:
    return Metric(name=name, template_ref=name, judge=JudgeKind.COMPARE, compare=Compare(**compare))


def test_compare_settings_that_do_not_fit_an_analysis_templates_shape_are_an_error_not_a_crash() -> None:
    classes = MetricTemplate(distribution=DistributionQuery(counts="sum by (class) (x[{{interval}}])", by="class"))
    templates = StaticTemplates({("models", "classes"): classes})
    result = asyncio.run(run_checks([_ref("classes", tolerance=0.05)], CONTEXT, SeriesAnswers({"0": 6.0}),
                                    templates))[0]
    assert result.verdict is Verdict.INCONCLUSIVE and "set compare.maxPSI, compare.maxJS or both" in result.error
    accuracy = MetricTemplate(proportion=ProportionQueries(successes="ok[{{interval}}]", trials="all[{{interval}}]"))
    result = asyncio.run(run_checks([_ref("acc")], CONTEXT, SeriesAnswers({}),
                                    StaticTemplates({("models", "acc"): accuracy})))[0]
    assert result.verdict is Verdict.INCONCLUSIVE and "tolerance above 0" in result.error


@pytest.mark.parametrize("le", ["fast", "NaN", "-Inf"])
def test_a_histogram_whose_le_is_not_a_bound_is_inconclusive_not_a_crash(le: str) -> None:
    latency = MetricTemplate(histogram=DistributionQuery(counts='sum by (le) (h{p="{{candidate}}"}[{{interval}}])',
                                                         by="le"))
    series = {"0.1": 500.0, le: 600.0, "+Inf": 700.0}
    result = asyncio.run(run_checks([_ref("lat", tolerance=0.2)], CONTEXT, SeriesAnswers(series),
                                    StaticTemplates({("models", "lat"): latency})))[0]
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.error == "the compare judge could not judge this measurement (ValueError)"
    assert le not in result.message  # the provider's text is not repeated


def test_a_candidate_and_stable_with_one_version_label_are_never_compared() -> None:
    same = AnalysisContext(namespace="models", target="digits", stable="main", candidate="main-candidate",
                           default_window_s=30.0, candidate_version="2.0.0", stable_version="2.0.0")
    result = asyncio.run(run_checks([ACCURACY], same, Provider({"successes": 400, "trials": 400},
                                                               {"successes": 400, "trials": 400}),
                                    StaticTemplates()))[0]
    assert result.verdict is Verdict.INCONCLUSIVE and "selects the same series as the candidate's" in result.error


def test_a_proportion_compare_without_a_tolerance_is_refused_by_the_parser() -> None:
    from tests.unit.conftest import LIMITS, spec_dict

    raw = spec_dict(metrics=[{"name": "acc", "template": "model-accuracy", "compare": {}}])
    with pytest.raises(SpecError, match="tolerated degradation above 0"):
        RolloutSpec.parse(raw, LIMITS)


def test_two_series_with_one_label_value_are_refused_without_repeating_the_value() -> None:
    from modelrollout.analysis.prometheus import parse_by_label

    raw = [{"metric": {"le": "token=s3cr3t"}, "value": [0, "1"]}, {"metric": {"le": "token=s3cr3t"}, "value": [0, "2"]}]
    outcome = parse_by_label(raw, "le")
    assert outcome.error and "s3cr3t" not in outcome.error


# --------------------------------------------------------------------------------------------------
# Decisive failures: a failure that also holds at the interim confidence (99.9%) rolls back at once


@pytest.mark.parametrize("candidate, decisive", [
    ({"successes": 354, "trials": 412}, True),  # worse by 0.11 with 412 samples: overwhelming
    ({"successes": 370, "trials": 400}, False),  # worse by 0.045: fails at 95% but not at 99.9%
])
def test_a_comparison_failure_is_decisive_only_when_it_holds_at_the_interim_confidence(
        candidate: dict[str, object], decisive: bool) -> None:
    result = judged(ACCURACY, candidate, {"successes": 3754, "trials": 3870})
    assert result.verdict is Verdict.FAIL, result.message
    assert result.decisive is decisive


def test_a_point_threshold_failure_is_never_decisive_however_far_off() -> None:
    """A point estimate says nothing about its sample size: 0 of 3 is no evidence to act on at once."""
    metric = Metric(name="success-rate", template="request-success-rate", min=0.99)
    result = judged(metric, {"successes": 0.2, "trials": 0.2}, {})  # the ratio query's answer: 0.2
    assert result.verdict is Verdict.FAIL and not result.decisive, result.message


@pytest.mark.parametrize("successes, trials, decisive", [(955, 1000, False), (900, 1000, True)])
def test_a_threshold_on_the_interval_is_decisive_when_the_interim_interval_lies_outside(
        successes: int, trials: int, decisive: bool) -> None:
    metric = Metric(name="success-rate", template="request-success-rate", min=0.97, confidence=0.95)
    result = judged(metric, {"successes": successes, "trials": trials}, {})
    assert result.verdict is Verdict.FAIL and result.decisive is decisive, result.message


# --------------------------------------------------------------------------------------------------
# Better, not just not worse: what an A/B test's winner needs (the same comparison the other way round)


@pytest.mark.parametrize("candidate, better, decisively", [
    ({"successes": 3765, "trials": 4000}, False, False),  # equal: not worse, not better
    ({"successes": 3960, "trials": 4000}, True, True),  # 0.99 vs 0.94: better by far more than 0.02
    ({"successes": 3885, "trials": 4000}, True, False),  # 0.971 vs 0.94: beyond 0.02 at 95%, not at 99.9%
])
def test_a_comparison_says_whether_the_candidate_is_better_beyond_the_tolerance(
        candidate: dict[str, object], better: bool, decisively: bool) -> None:
    result = judged(ACCURACY, candidate, {"successes": 3760, "trials": 4000})
    assert result.verdict is Verdict.PASS, result.message
    assert (result.better, result.decisively_better) == (better, decisively), result.message


def test_better_with_a_relative_tolerance_is_measured_from_the_stables_rate() -> None:
    """0.555 against 0.500, tolerance 10% of the stable's 0.500 = 0.05: better by 0.055 is beyond it."""
    relative = replace(ACCURACY, compare=Compare(tolerance=0.1, relative=True, min_samples=100))
    result = judged(relative, {"successes": 111_000, "trials": 200_000}, {"successes": 100_000, "trials": 200_000})
    assert result.verdict is Verdict.PASS and result.better, result.message


LE = ("0.06", "0.07", "0.08", "0.09", "0.1", "0.11", "0.12", "+Inf")


def _latency(*cumulative: float) -> dict[str, object]:
    return {"le": dict(zip(LE, cumulative, strict=True))}


@pytest.mark.parametrize("candidate, better", [
    (_latency(0, 500, 1000, 1000, 1000, 1000, 1000, 1000), True),  # median 0.07 vs 0.10: 30% faster
    (_latency(0, 0, 0, 300, 1000, 1000, 1000, 1000), False),  # median ~0.093: 7% faster, within 20%
])
def test_a_latency_candidate_is_better_only_when_faster_by_more_than_the_tolerance(
        candidate: dict[str, object], better: bool) -> None:
    p50 = Metric(name="latency", template="request-duration-p50", judge=JudgeKind.COMPARE,
                 compare=Compare(tolerance=0.2, min_samples=100))
    result = judged(p50, candidate, _latency(0, 0, 0, 0, 500, 1000, 1000, 1000))
    assert result.verdict is Verdict.PASS and result.better is better, result.message


def test_a_distribution_is_never_better_only_different() -> None:
    drift = Metric(name="drift", template="prediction-distribution", judge=JudgeKind.COMPARE,
                   compare=Compare(max_psi=0.2, min_samples=100))
    even = {str(k): 100.0 for k in range(10)}
    result = judged(drift, {"class": even}, {"class": even})
    assert result.verdict is Verdict.PASS and not result.better and not result.decisively_better


def test_a_drift_just_beyond_its_bound_fails_but_is_not_decisive() -> None:
    """Significant (chi-square p < 0.001 on thousands of predictions) but only just past the bound: two
    seeds of one recipe differ that much. Decisive needs twice the bound."""
    drift = Metric(name="drift", template="prediction-distribution", judge=JudgeKind.COMPARE,
                   compare=Compare(max_psi=0.03, min_samples=100))
    stable = {str(k): 900.0 for k in range(10)}
    slightly = {**stable, "5": 1400.0, "6": 600.0}  # PSI 0.037: past 0.03, not past 0.06
    result = judged(drift, {"class": slightly}, {"class": stable})
    assert result.verdict is Verdict.FAIL and not result.decisive, result.message
    far = {**stable, "5": 2400.0, "6": 200.0}
    result = judged(drift, {"class": far}, {"class": stable})
    assert result.verdict is Verdict.FAIL and result.decisive, result.message
