"""The scale benchmark (``python -m loadtests.bench_scale``) and its soak at a small size, against the real
kube-apiserver and a real Prometheus: every figure it prints is measured, and the rollouts did what the
figures say."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import bench_scale
from localcluster.executor_exporter import ExecutorExporter
from localcluster.prometheus import PrometheusServer
from testkit.kube import Kube

ROLLOUTS = 30
PROBES = 3
SOAK_ROLLOUTS = 10
CHURN = 2
# A checked rollout's series: two gauges, its analysis runs and its checks (one verdict here), no
# _created lines; room for a second verdict and provider errors, not for a deleted rollout's.
SERIES_PER_ROLLOUT = 6


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_scale_bench_measures_a_small_size(cluster: Kube, prometheus: PrometheusServer, exporter: ExecutorExporter,
                                           tmp_path: Path) -> None:
    settings = bench_scale.Settings(interval="2s", probes=PROBES, samples=2, steady_s=6, deadline_s=45, poll_s=0.5)
    result = bench_scale.run_size(cluster, prometheus.url, ROLLOUTS, settings, tmp_path, exporter)
    printed = bench_scale.render([result], settings.interval)
    print(printed)  # shown when the test fails

    assert result.setup_s > 0
    assert result.first_weight is not None and result.first_weight.done, printed
    assert result.first_weight.reached == ROLLOUTS
    assert result.first_check is not None and result.first_check.done, printed  # steady means checked once
    assert len(result.new_rollout.seconds) == PROBES and not result.new_rollout.missed, printed
    assert len(result.abort.seconds) == PROBES and not result.abort.missed, printed
    # Two samples of every rollout, each checked once its first window had passed.
    assert len(result.staleness_s) + result.never_checked == 2 * ROLLOUTS
    assert result.staleness_s and max(result.staleness_s) < 10 * settings.interval_s, printed
    rates = result.rates
    assert rates.seconds >= 5
    assert rates.ticks > 0 and rates.analyses > 0 and rates.prometheus_queries > 0
    assert rates.cpu_cores > 0 and result.peak_rss_mib > 0
    cpu = rates.cpu_by_process
    assert cpu["machine"] >= cpu["operator"] > 0 and "kube-apiserver" in cpu and "etcd" in cpu, cpu
    # Passes repeating passes wait for the status heartbeat (60 s, longer than the steady period): the
    # API server sees a small share of a write per analysis (before: one each), and its watch as little.
    writes = sum(v for kind, v in rates.api_by_kind.items() if kind.startswith("PATCH modelrollouts"))
    assert writes <= rates.analyses / 4 and rates.rollout_watch_events <= rates.analyses / 4, printed
    # The builtin success rate, asked alone, is two queries per analysis (the request gate and the value);
    # grouped, two per instant for all the rollouts checked in it.
    assert result.metric == "builtin" and rates.prometheus_queries < rates.analyses, printed
    assert f"N={ROLLOUTS}" in printed and "not reached" not in printed
    assert not cluster.run("get", "modelrollouts", "-n", result.namespace, "-o", "name", check=False).stdout


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_soak_samples_memory_while_rollouts_come_and_go(cluster: Kube, prometheus: PrometheusServer,
                                                        tmp_path: Path) -> None:
    settings = bench_scale.Settings(interval="2s", deadline_s=45, poll_s=0.5)
    soak = bench_scale.SoakSettings(duration_s=20, churn=CHURN, churn_every_s=2, sample_every_s=5)
    result = bench_scale.run_soak(cluster, prometheus.url, SOAK_ROLLOUTS, settings, soak, tmp_path)
    printed = bench_scale.render_soak(result)
    print(printed)  # shown when the test fails

    assert result.first_weight is not None and result.first_weight.done, printed
    assert len(result.samples) == 5 and result.samples[-1].elapsed_s >= 20, printed  # at 0, 5, ... 20 s
    assert all(s.rss_mib > 0 for s in result.samples) and result.peak_rss_mib > 0
    first, last = result.samples[0], result.samples[-1]
    assert first.series >= SOAK_ROLLOUTS and last.ticks > first.ticks, printed
    assert last.created >= 5 * CHURN and last.aborted > 0 and last.deleted > CHURN, printed
    # Deleted rollouts' series are gone: they follow the rollouts that exist, not every one ever created
    # (a deletion whose watch event is on its way may still be counted).
    assert last.series_rollouts <= last.existing + CHURN, printed
    assert last.series <= SERIES_PER_ROLLOUT * last.existing, printed
    assert result.rss_trend() is not None and "RSS slope after the first 20%: " in printed
    assert not cluster.run("get", "modelrollouts", "-n", result.namespace, "-o", "name", check=False).stdout
