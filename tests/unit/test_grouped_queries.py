"""Grouped queries: the checks of many rollouts at one instant share one query per template and namespace,
and each reads only its own series from the answer.

Invariants pinned here:
- a rollout's verdict comes from its own series only (another rollout's failure never reaches it, a rollout
  missing from the answer has no data, never a pass, and a series lacking a label belongs to nobody);
- the queries sent for one instant follow templates and namespaces, not rollouts, and a failure of the
  shared query is every asker's error, asked (and retried) once;
- one asker giving up (its tick's deadline) does not cancel the query the others wait for;
- a later instant asks again, and old answers are dropped.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from modelrollout.analysis import AnalysisContext, PrometheusProvider, StaticTemplates, run_checks
from modelrollout.analysis import prometheus as prometheus_module
from modelrollout.analysis import runner as runner_module
from modelrollout.analysis.promql import render_query
from modelrollout.api import Metric
from modelrollout.backends.seldon_v1_queries import BY_PREDICTOR, REQUEST_COUNT, REQUEST_COUNT_QUERY
from modelrollout.status import CheckRecord, Verdict

SUCCESS = Metric(name="success-rate", template="request-success-rate", min=0.99)
NOW = 1_790_000_000.25


class GroupedPrometheus:
    """Stands in for PrometheusConnect on grouped queries: one series per (deployment, predictor) of the
    namespace the query names, the success rate or the request count as set."""

    def __init__(self, rates: dict[tuple[str, str, str], float], counts: dict[tuple[str, str, str], float],
                 failure: BaseException | None = None) -> None:
        self.rates, self.counts, self.failure = rates, counts, failure
        self.queries: list[str] = []
        self.release = threading.Event()
        self.release.set()
        self.lock = threading.Lock()

    def custom_query(self, query: str, params: dict[str, Any] | None = None, timeout: Any = None) -> Any:
        with self.lock:
            self.queries.append(query)
        self.release.wait(5)
        if self.failure is not None:
            raise self.failure
        values = self.rates if query.startswith("1 - (") else self.counts
        return [{"metric": {"deployment_name": deployment, "predictor_name": predictor}, "value": [NOW, str(v)]}
                for (namespace, deployment, predictor), v in values.items() if f'namespace="{namespace}"' in query]


def context(namespace: str, target: str) -> AnalysisContext:
    return AnalysisContext(namespace=namespace, target=target, stable="main", candidate="main-candidate",
                           default_window_s=30)


def provider_for(client: GroupedPrometheus) -> PrometheusProvider:
    async def no_wait(_: float) -> None:
        return None
    return PrometheusProvider("http://prometheus:9090", client=client, executor=ThreadPoolExecutor(4), sleep=no_wait)


def check_all(provider: PrometheusProvider, contexts: list[AnalysisContext], metric: Metric = SUCCESS,
              min_requests: int = 50) -> list[CheckRecord]:
    async def run() -> list[CheckRecord]:
        results = await asyncio.gather(*(run_checks([metric], c, provider, StaticTemplates(),
                                                    min_requests=min_requests) for c in contexts))
        return [r[0] for r in results]
    return asyncio.run(run())


@pytest.fixture(autouse=True)
def one_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check of a test starts within the same second (a real run may straddle two: twice the queries)."""
    monkeypatch.setattr(runner_module.time, "time", lambda: NOW)


def test_a_hundred_rollouts_share_two_queries_and_each_is_judged_on_its_own_series() -> None:
    rollouts = [f"model-{i}" for i in range(100)]
    rates = {("models", name, p): 1.0 for name in rollouts for p in ("main", "main-candidate")}
    counts = {("models", name, p): 500.0 for name in rollouts for p in ("main", "main-candidate")}
    rates[("models", "model-7", "main-candidate")] = 0.5  # one failing candidate
    rates[("models", "model-8", "main")] = 0.0  # a stable predictor failing: not model-8's candidate
    del rates[("models", "model-13", "main-candidate")]  # a candidate with no success-rate series
    del counts[("models", "model-21", "main-candidate")], rates[("models", "model-21", "main-candidate")]
    client = GroupedPrometheus(rates, counts)
    results = check_all(provider_for(client), [context("models", name) for name in rollouts])
    by_name = dict(zip(rollouts, results, strict=True))
    assert (by_name["model-7"].verdict, by_name["model-7"].value) == (Verdict.FAIL, 0.5)
    assert by_name["model-13"].verdict is Verdict.INCONCLUSIVE and "no data" in by_name["model-13"].message
    assert by_name["model-21"].verdict is Verdict.INCONCLUSIVE and "only 0 requests" in by_name["model-21"].message
    others = [r for name, r in by_name.items() if name not in ("model-7", "model-13", "model-21")]
    assert {(r.verdict, r.value) for r in others} == {(Verdict.PASS, 1.0)} and len(others) == 97
    assert len(client.queries) == 2  # the request count and the success rate, once each for all 100
    # What status shows is each rollout's own query, which answers the same (promtool tests).
    assert 'deployment_name="model-7",predictor_name="main-candidate"' in by_name["model-7"].query


def test_each_namespace_is_asked_on_its_own() -> None:
    rates = {(ns, "iris", "main-candidate"): 1.0 for ns in ("team-a", "team-b")}
    counts = {(ns, "iris", "main-candidate"): 500.0 for ns in ("team-a", "team-b")}
    rates[("team-b", "iris", "main-candidate")] = 0.9
    client = GroupedPrometheus(rates, counts)
    results = check_all(provider_for(client), [context("team-a", "iris"), context("team-b", "iris")])
    assert [(r.verdict, r.value) for r in results] == [(Verdict.PASS, 1.0), (Verdict.FAIL, 0.9)]
    assert len(client.queries) == 4
    assert {q.count('namespace="team-a"') + q.count('namespace="team-b"') > 0 for q in client.queries} == {True}


def test_a_series_without_the_rollouts_labels_belongs_to_no_rollout() -> None:
    client = GroupedPrometheus({}, {})
    provider = provider_for(client).pinned(NOW)

    async def ask() -> Any:
        client.custom_query = lambda *a, **k: [{"metric": {"deployment_name": "iris"}, "value": [NOW, "1"]}]  # type: ignore[method-assign]
        return await provider.query_group("sum by (deployment_name, predictor_name) (x)",
                                          (("deployment_name", "iris"), ("predictor_name", "main-candidate")))
    outcome = asyncio.run(ask())
    assert outcome.value is None and outcome.no_data_reason and not outcome.error


def test_prometheus_down_is_every_rollouts_error_asked_once_with_its_retries() -> None:
    client = GroupedPrometheus({}, {}, failure=requests.ConnectionError("refused"))
    results = check_all(provider_for(client), [context("models", f"model-{i}") for i in range(50)])
    assert {r.verdict for r in results} == {Verdict.INCONCLUSIVE}
    assert all("Prometheus unreachable at http://prometheus:9090" in r.message for r in results)
    assert len(client.queries) == 3  # the request gate's query, tried 1 + 2 retries, for all 50


def test_one_asker_giving_up_does_not_cancel_the_query_the_others_wait_for() -> None:
    counts = {("models", "iris", "main-candidate"): 500.0}
    client = GroupedPrometheus({}, counts)
    client.release.clear()
    provider = provider_for(client).pinned(NOW)
    query = render_count_query()

    async def scenario() -> Any:
        first = asyncio.create_task(provider.query_group(query, group("iris")))
        second = asyncio.create_task(provider.query_group(query, group("iris")))
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.sleep(0.05)
        client.release.set()
        return await asyncio.wait_for(second, 5), first.cancelled()
    outcome, cancelled = asyncio.run(scenario())
    assert cancelled and outcome.value == 500.0 and len(client.queries) == 1


def test_a_later_instant_asks_again_and_old_answers_are_dropped() -> None:
    counts = {("models", "iris", "main-candidate"): 500.0}
    client = GroupedPrometheus({}, counts)
    provider = provider_for(client)
    query = render_count_query()

    async def scenario() -> list[float | None]:
        values = []
        for at in (NOW, NOW, NOW + 1, NOW + 1, NOW + 10):
            values.append((await provider.pinned(at).query_group(query, group("iris"))).value)
        return values
    assert asyncio.run(scenario()) == [500.0] * 5
    assert len(client.queries) == 3
    kept = provider._shared._answers
    assert {at for _, at in kept} == {NOW + 10}


def test_an_unpinned_provider_shares_nothing() -> None:
    client = GroupedPrometheus({}, {("models", "iris", "main-candidate"): 500.0})
    provider = provider_for(client)

    async def twice() -> None:
        for _ in range(2):
            await provider.query_group(render_count_query(), group("iris"))
    asyncio.run(twice())
    assert len(client.queries) == 2


def test_a_query_of_the_users_own_is_asked_per_rollout() -> None:
    client = GroupedPrometheus({}, {})
    client.custom_query = lambda *a, **k: (client.queries.append(a[0]), [{"metric": {}, "value": [NOW, "1"]}])[1]  # type: ignore[method-assign]
    own = Metric(name="custom", query='sum(rate(my_metric{namespace="{{namespace}}"}[{{interval}}]))', min=0.5)
    results = check_all(provider_for(client), [context("models", f"model-{i}") for i in range(10)], own,
                        min_requests=0)
    assert {r.verdict for r in results} == {Verdict.PASS}
    assert len(client.queries) == 10


def render_count_query() -> str:
    assert REQUEST_COUNT.grouped is not None and REQUEST_COUNT.value == REQUEST_COUNT_QUERY
    return render_query(REQUEST_COUNT.grouped.template.value, context("models", "iris").variables(30))


def group(target: str) -> tuple[tuple[str, str], ...]:
    values = {"target": target, "candidate": "main-candidate"}
    return tuple((label, values[variable]) for label, variable in BY_PREDICTOR)


assert prometheus_module.SHARED_ANSWERS_KEPT_S < 10  # the last test's instants are further apart than kept
