"""The scale benchmark (``python -m loadtests.bench_scale``) at a small size, against the real kube-apiserver
and a real Prometheus: every figure it prints is measured, and the rollouts did what the figures say."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import bench_scale
from localcluster.prometheus import PrometheusServer
from testkit.kube import Kube

ROLLOUTS = 30
PROBES = 3


@pytest.mark.cluster
@pytest.mark.timeout(120)
def test_scale_bench_measures_a_small_size(cluster: Kube, prometheus: PrometheusServer, tmp_path: Path) -> None:
    settings = bench_scale.Settings(interval="2s", probes=PROBES, samples=2, steady_s=6, deadline_s=45, poll_s=0.5)
    result = bench_scale.run_size(cluster, prometheus.url, ROLLOUTS, settings, tmp_path)
    printed = bench_scale.render([result], settings.interval)
    print(printed)  # shown when the test fails

    assert result.setup_s > 0
    assert result.first_weight is not None and result.first_weight.done, printed
    assert result.first_weight.reached == ROLLOUTS
    assert len(result.new_rollout.seconds) == PROBES and not result.new_rollout.missed, printed
    assert len(result.abort.seconds) == PROBES and not result.abort.missed, printed
    # Two samples of every rollout, each checked once its first window had passed.
    assert len(result.staleness_s) + result.never_checked == 2 * ROLLOUTS
    assert result.staleness_s and max(result.staleness_s) < 10 * settings.interval_s, printed
    rates = result.rates
    assert rates.seconds >= 5
    assert rates.ticks > 0 and rates.analyses > 0 and rates.api_requests > 0 and rates.prometheus_queries > 0
    assert rates.rollout_watch_events > 0 and rates.cpu_cores > 0 and result.peak_rss_mib > 0
    assert any(kind.startswith("PATCH modelrollouts") for kind in rates.api_by_kind), rates.api_by_kind
    assert f"N={ROLLOUTS}" in printed and "not reached" not in printed
    assert not cluster.run("get", "modelrollouts", "-n", result.namespace, "-o", "name", check=False).stdout
