"""The command line: flags, their environment variables and defaults, and how they reach the operator's config."""

from __future__ import annotations

from typing import Any

import pytest
from modelrollout import __main__ as cli

ENV = ("MODELROLLOUT_PROMETHEUS_URL", "MODELROLLOUT_SCRAPE_INTERVAL", "MODELROLLOUT_ALLOWED_PROMETHEUS_URLS",
       "MODELROLLOUT_METRICS_PORT", "MODELROLLOUT_HEALTH_ENDPOINT", "MODELROLLOUT_PEERING",
       "MODELROLLOUT_NAMESPACE_LABEL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """parse_args must exit with argparse's usage error (status 2); returns its message."""
    with pytest.raises(SystemExit) as exc:
        cli.parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_defaults() -> None:
    args = cli.parse_args([])
    assert args.scrape_interval == 30.0  # kube-prometheus-stack's default
    assert args.allowed_prometheus_urls == ()  # only --prometheus-url may be used
    assert args.prometheus_url == "http://127.0.0.1:9090"
    assert args.provider_workers == 8 and args.kube_request_timeout == 10.0
    assert args.concurrency == 16 and args.metrics_port == 8000 and args.namespace == []
    assert not args.leader_election and args.lease_name == "modelrollout"
    assert (args.lease_duration, args.renew_deadline, args.retry_period) == (15.0, 10.0, 2.0)


def test_leader_election_timing_that_would_let_two_leaders_write_is_refused(
        capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(["--leader-election", "--lease-duration", "5", "--renew-deadline", "5"], capsys)
    assert "retry < renew deadline < lease duration" in err, err


def test_leader_election_settings_reach_the_operator_config() -> None:
    from modelrollout.handlers import OperatorConfig

    config = OperatorConfig()
    cli.configure(config, cli.parse_args(["--leader-election", "--lease-namespace", "ops", "--identity", "pod-1",
                                          "--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "1"]))
    election = config.leader_election
    assert election is not None and (election.namespace, election.name, election.identity) == (
        "ops", "modelrollout", "pod-1")
    assert (election.timing.lease_duration_s, election.timing.renew_deadline_s, election.timing.retry_s) == (
        6.0, 4.0, 1.0)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("1s", 1.0), ("1m30s", 90.0), ("500ms", 0.5),
                                               ("2m", 120.0)])
def test_scrape_interval_is_a_duration(text: str, seconds: float) -> None:
    assert cli.parse_args(["--scrape-interval", text]).scrape_interval == seconds
    assert cli.parse_args([f"--scrape-interval={text}"]).scrape_interval == seconds


@pytest.mark.parametrize(("text", "message"), [("0s", "must be above zero"), ("0ms", "must be above zero"),
                                               ("-5s", "is not a duration"), ("30", "is not a duration"),
                                               ("soon", "is not a duration"), ("", "is not a duration")])
def test_scrape_interval_that_is_not_a_positive_duration_is_refused(
        text: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused([f"--scrape-interval={text}"], capsys)
    assert "--scrape-interval" in err and message in err, err


def test_scrape_interval_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MODELROLLOUT_SCRAPE_INTERVAL", "15s")
    assert cli.parse_args([]).scrape_interval == 15.0
    assert cli.parse_args(["--scrape-interval", "1s"]).scrape_interval == 1.0  # the flag wins
    monkeypatch.setenv("MODELROLLOUT_SCRAPE_INTERVAL", "0s")
    assert "must be above zero" in refused([], capsys)  # a bad environment value is refused like a bad flag


def test_allowed_prometheus_urls_are_repeatable() -> None:
    args = cli.parse_args(["--allowed-prometheus-url", "http://prom-a.monitoring:9090",
                           "--allowed-prometheus-url=https://prom-b.example/", "--allowed-prometheus-url",
                           "http://prom-a.monitoring:9090"])
    assert args.allowed_prometheus_urls == ("http://prom-a.monitoring:9090", "https://prom-b.example/")


def test_allowed_prometheus_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROLLOUT_ALLOWED_PROMETHEUS_URLS", " http://a:9090, ,https://b:9091,")
    assert cli.parse_args([]).allowed_prometheus_urls == ("http://a:9090", "https://b:9091")
    # Flags replace the environment's list rather than adding to it.
    assert cli.parse_args(["--allowed-prometheus-url", "http://c:9090"]).allowed_prometheus_urls == (
        "http://c:9090",)
    monkeypatch.setenv("MODELROLLOUT_ALLOWED_PROMETHEUS_URLS", "")
    assert cli.parse_args([]).allowed_prometheus_urls == ()


@pytest.mark.parametrize("url", ["prometheus:9090", "ftp://prom:21", "http://", "file:///etc/passwd"])
def test_allowed_prometheus_url_must_be_http(url: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert "is not an http:// or https:// URL" in refused(["--allowed-prometheus-url", url], capsys)
    monkeypatch.setenv("MODELROLLOUT_ALLOWED_PROMETHEUS_URLS", f"http://ok:9090,{url}")
    err = refused([], capsys)
    assert "MODELROLLOUT_ALLOWED_PROMETHEUS_URLS" in err and "is not an http:// or https:// URL" in err, err


def test_provider_workers_and_kube_request_timeout() -> None:
    args = cli.parse_args(["--provider-workers", "3", "--kube-request-timeout", "2.5"])
    assert args.provider_workers == 3 and args.kube_request_timeout == 2.5


@pytest.mark.parametrize("argv", [["--provider-workers", "0"], ["--provider-workers", "two"],
                                  ["--provider-workers", "1.5"], ["--kube-request-timeout", "0"],
                                  ["--kube-request-timeout=-1"], ["--kube-request-timeout", "nan"],
                                  ["--kube-request-timeout", "inf"], ["--kube-request-timeout", "soon"]])
def test_worker_count_and_timeout_must_be_positive(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert argv[0].split("=")[0] in refused(argv, capsys)


class Started:
    """What main() handed Kopf: the calls to kopf.configure and kopf.run, and the config in run's memo."""

    def __init__(self) -> None:
        self.kopf: dict[str, dict[str, Any]] = {}

    @property
    def config(self) -> Any:
        from modelrollout.handlers import OperatorConfig  # here: parsing needs none of the operator's modules

        memo = self.kopf["run"]["memo"]
        assert isinstance(memo.config, OperatorConfig)
        return memo.config


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Started:
    """main() with Kopf's configure and run replaced."""
    started = Started()
    monkeypatch.setattr(cli.kopf, "configure", lambda **kwargs: started.kopf.update(configure=kwargs))
    monkeypatch.setattr(cli.kopf, "run", lambda **kwargs: started.kopf.update(run=kwargs))
    return started


def test_main_wires_the_flags_into_the_operator_config(started: Started) -> None:
    assert cli.main(["--namespace", "models", "--prometheus-url", "http://prom:9090", "--scrape-interval", "1s",
                     "--allowed-prometheus-url", "http://other:9090", "--allowed-prometheus-url",
                     "http://third:9090", "--metrics-port", "9100", "--concurrency", "4", "--provider-workers",
                     "2", "--kube-request-timeout", "3.5"]) == 0
    config = started.config
    assert config.prometheus_url == "http://prom:9090"
    assert config.scrape_interval_s == 1.0
    assert config.allowed_prometheus_urls == ("http://other:9090", "http://third:9090")
    assert config.metrics_port == 9100 and config.concurrency == 4
    assert config.provider_workers == 2
    assert config.kube_request_timeout_s == 3.5
    assert started.kopf["run"]["namespaces"] == ["models"] and started.kopf["run"]["clusterwide"] is False
    assert started.kopf["run"]["standalone"] is True


def test_main_wires_the_defaults_and_the_environment(started: Started, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROLLOUT_SCRAPE_INTERVAL", "15s")
    monkeypatch.setenv("MODELROLLOUT_ALLOWED_PROMETHEUS_URLS", "http://a:9090,http://b:9090")
    assert cli.main([]) == 0
    config = started.config
    assert config.scrape_interval_s == 15.0
    assert config.allowed_prometheus_urls == ("http://a:9090", "http://b:9090")
    assert config.provider_workers == 8
    assert config.kube_request_timeout_s == 10.0
    assert started.kopf["run"]["clusterwide"] is True


def test_the_wired_config_gives_the_limits_a_spec_must_fit(started: Started) -> None:
    cli.main(["--prometheus-url", "http://prom:9090", "--scrape-interval", "5s",
              "--allowed-prometheus-url", "http://other:9090"])
    limits = started.config.limits()
    assert limits.scrape_interval_s == 5.0 and limits.min_window_s == 20.0
    assert limits.prometheus_allowed("http://prom:9090") and limits.prometheus_allowed("http://other:9090/")
    assert not limits.prometheus_allowed("http://attacker:9090")


def test_the_namespace_label_follows_the_scrape_and_must_be_a_label_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.parse_args([]).namespace_label == "namespace"
    assert cli.parse_args(["--namespace-label", "kubernetes_namespace"]).namespace_label == "kubernetes_namespace"
    assert "not a Prometheus label name" in refused(["--namespace-label", 'namespace="x"} or vector(1) #'], capsys)
    from modelrollout.handlers import OperatorConfig

    config = OperatorConfig()
    cli.configure(config, cli.parse_args(["--namespace-label", "kubernetes_namespace"]))
    assert config.limits().namespace_label == "kubernetes_namespace"
