"""Fault configuration, sampling and the admin API's access rule, in process."""

from __future__ import annotations

import statistics
from http import HTTPStatus

import pytest
from modelserver import faults
from modelserver.faults import FaultConfig, FaultConfigError


def test_off_by_default() -> None:
    config = FaultConfig.from_env({})
    assert config == FaultConfig()
    assert not config.active


def test_from_env() -> None:
    config = FaultConfig.from_env(
        {
            faults.ENV_LATENCY_MS: "120",
            faults.ENV_JITTER_MS: "15.5",
            faults.ENV_DISTRIBUTION: "uniform",
            faults.ENV_ERROR_RATE: "0.25",
            faults.ENV_ERROR_STATUS: "500",
        }
    )
    assert config == FaultConfig(120.0, 15.5, "uniform", 0.25, 500)
    assert config.active


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({faults.ENV_ERROR_RATE: "1.5"}, "error_rate"),
        ({faults.ENV_LATENCY_MS: "-1"}, "latency_ms"),
        ({faults.ENV_LATENCY_MS: "fast"}, "not a number"),
        ({faults.ENV_DISTRIBUTION: "poisson"}, "latency_distribution"),
        ({faults.ENV_ERROR_STATUS: "418"}, "error_status"),
    ],
)
def test_bad_env_values_are_refused(env: dict[str, str], words: str) -> None:
    with pytest.raises(FaultConfigError, match=words):
        FaultConfig.from_env(env)


def test_updates_are_checked() -> None:
    config = FaultConfig().updated({"latency_ms": 50, "error_rate": 0.5})
    assert (config.latency_ms, config.error_rate) == (50.0, 0.5)
    for bad in ({"latency": 1}, {"error_rate": "high"}, {"error_rate": True}, {"error_status": 503.0}, [1]):
        with pytest.raises(FaultConfigError):
            FaultConfig().updated(bad)  # type: ignore[arg-type]


def test_shared_config_round_trip() -> None:
    shared = faults.SharedFaultConfig(FaultConfig())
    wanted = FaultConfig(10.0, 2.0, "uniform", 0.1, 500)
    shared.set(wanted)
    assert shared.get() == wanted


def test_latency_samples_follow_the_configured_distribution() -> None:
    injector = faults.FaultInjector(faults.SharedFaultConfig(FaultConfig()), seed=7)
    normal = [injector.sample_delay_seconds(FaultConfig(100.0, 10.0, "normal")) * 1000 for _ in range(4000)]
    uniform = [injector.sample_delay_seconds(FaultConfig(100.0, 10.0, "uniform")) * 1000 for _ in range(4000)]
    fixed = {injector.sample_delay_seconds(FaultConfig(100.0, 0.0)) for _ in range(10)}
    assert abs(statistics.fmean(normal) - 100) < 1.5 and abs(statistics.stdev(normal) - 10) < 1.0
    assert min(uniform) >= 90 and max(uniform) <= 110
    assert abs(statistics.stdev(uniform) - 10 / 3**0.5) < 0.6
    assert fixed == {0.1}
    clipped = [injector.sample_delay_seconds(FaultConfig(0.0, 50.0, "normal")) for _ in range(200)]
    assert min(clipped) == 0.0


def test_apply_sleeps_and_fails_at_the_configured_rate() -> None:
    shared = faults.SharedFaultConfig(FaultConfig(latency_ms=30.0, error_rate=0.2, error_status=500))
    injector = faults.FaultInjector(shared, seed=11)
    slept: list[float] = []
    failures = 0
    n = 2000
    for _ in range(n):
        try:
            injector.apply(sleep=slept.append)
        except faults.InjectedFault as fault:
            assert fault.status == 500
            failures += 1
    assert slept == [0.03] * n
    # Binomial(2000, 0.2): sd ~ 17.9; allow five of them.
    assert abs(failures - 0.2 * n) < 5 * (n * 0.2 * 0.8) ** 0.5
    shared.set(FaultConfig())
    slept.clear()
    injector.apply(sleep=slept.append)
    assert slept == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.168.1.2", False),
        ("::ffff:10.0.0.5", False),
        ("not-an-ip", False),
    ],
)
def test_loopback_detection(host: str, expected: bool) -> None:
    assert faults.is_loopback(host) is expected


TOKEN = "a-token-of-24-characters"


def test_admin_api_is_off_by_default() -> None:
    settings = faults.AdminSettings.from_env({})
    assert not settings.enabled
    # A port and a token alone do not turn it on: only the explicit flag does.
    assert not faults.AdminSettings.from_env({faults.ENV_ADMIN_PORT: "9010", faults.ENV_ADMIN_TOKEN: TOKEN}).enabled
    for off in ("0", "false", "No", "off", ""):
        assert not faults.AdminSettings.from_env({faults.ENV_ADMIN_ENABLED: off}).enabled
    with pytest.raises(FaultConfigError, match="the fault admin API is off"):
        faults.make_admin_server(faults.SharedFaultConfig(FaultConfig()), settings)


def test_admin_api_enabled_with_a_token() -> None:
    settings = faults.AdminSettings.from_env(
        {faults.ENV_ADMIN_ENABLED: "1", faults.ENV_ADMIN_TOKEN: TOKEN, faults.ENV_ADMIN_PORT: "9123"}
    )
    assert (settings.enabled, settings.host, settings.port, settings.token) == (True, "127.0.0.1", 9123, TOKEN)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({faults.ENV_ADMIN_ENABLED: "1"}, "refusing to start the fault admin API without a bearer token"),
        ({faults.ENV_ADMIN_ENABLED: "true", faults.ENV_ADMIN_TOKEN: ""}, "without a bearer token"),
        ({faults.ENV_ADMIN_ENABLED: "1", faults.ENV_ADMIN_TOKEN: "short"}, "at least 16 characters"),
        ({faults.ENV_ADMIN_ENABLED: "1", faults.ENV_ADMIN_TOKEN: "sixteen chars with space"}, "without whitespace"),
        ({faults.ENV_ADMIN_ENABLED: "1", faults.ENV_ADMIN_TOKEN: TOKEN, faults.ENV_ADMIN_PORT: "0"}, "1..65535"),
        ({faults.ENV_ADMIN_ENABLED: "maybe"}, "use 1 to enable"),
        ({faults.ENV_ADMIN_PORT: "http"}, "not a port number"),
    ],
)
def test_bad_admin_settings_are_refused(env: dict[str, str], words: str) -> None:
    with pytest.raises(FaultConfigError, match=words):
        faults.AdminSettings.from_env(env)


def test_admin_access_rule() -> None:
    assert faults.authorise(None, TOKEN) == HTTPStatus.UNAUTHORIZED
    assert faults.authorise("", TOKEN) == HTTPStatus.UNAUTHORIZED
    assert faults.authorise("Bearer wrong", TOKEN) == HTTPStatus.UNAUTHORIZED
    assert faults.authorise(f"Basic {TOKEN}", TOKEN) == HTTPStatus.UNAUTHORIZED
    assert faults.authorise(TOKEN, TOKEN) == HTTPStatus.UNAUTHORIZED
    assert faults.authorise(f"Bearer {TOKEN[:-1]}", TOKEN) == HTTPStatus.UNAUTHORIZED
    assert faults.authorise(f"Bearer {TOKEN}", TOKEN) is None
    assert faults.authorise(f"bearer {TOKEN}", TOKEN) is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], HTTPStatus.LENGTH_REQUIRED),
        (["abc"], HTTPStatus.BAD_REQUEST),
        (["-1"], HTTPStatus.BAD_REQUEST),
        (["+5"], HTTPStatus.BAD_REQUEST),
        (["1e3"], HTTPStatus.BAD_REQUEST),
        ([" 5"], HTTPStatus.BAD_REQUEST),
        (["5", "5"], HTTPStatus.BAD_REQUEST),
        (["1" * 40], HTTPStatus.BAD_REQUEST),
        ([str(faults.MAX_ADMIN_BODY_BYTES + 1)], HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
        (["0"], 0),
        ([str(faults.MAX_ADMIN_BODY_BYTES)], faults.MAX_ADMIN_BODY_BYTES),
    ],
)
def test_content_length_is_checked_before_any_body_is_read(values: list[str], expected: object) -> None:
    checked = faults.body_length(values)
    if isinstance(expected, HTTPStatus):
        assert isinstance(checked, tuple) and checked[0] == expected
    else:
        assert checked == expected
