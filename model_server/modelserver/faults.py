"""Fault knobs for chaos experiments: added latency and an error rate on predict calls.

Set at start through environment variables, changed at run time through a small admin HTTP
server. The configuration lives in shared memory created before seldon-core forks its server
processes, so the admin process and every gunicorn worker see the same values.

Environment (all off by default):
  MODEL_FAULT_LATENCY_MS            mean added latency per predict call, milliseconds
  MODEL_FAULT_LATENCY_JITTER_MS     spread: stddev for "normal", half-width for "uniform"
  MODEL_FAULT_LATENCY_DISTRIBUTION  "normal" (default) or "uniform"; samples are clipped at 0
  MODEL_FAULT_ERROR_RATE            fraction of predict calls answered with an error, 0..1
  MODEL_FAULT_ERROR_STATUS          HTTP status of those errors, 500 or 503 (default 503)
  MODEL_FAULT_SEED                  seed for the fault dice (default: random)
"""

from __future__ import annotations

import ctypes
import hmac
import ipaddress
import json
import logging
import multiprocessing
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

DISTRIBUTIONS = ("normal", "uniform")
ERROR_STATUSES = (500, 503)
MAX_LATENCY_MS = 60_000.0

ENV_LATENCY_MS = "MODEL_FAULT_LATENCY_MS"
ENV_JITTER_MS = "MODEL_FAULT_LATENCY_JITTER_MS"
ENV_DISTRIBUTION = "MODEL_FAULT_LATENCY_DISTRIBUTION"
ENV_ERROR_RATE = "MODEL_FAULT_ERROR_RATE"
ENV_ERROR_STATUS = "MODEL_FAULT_ERROR_STATUS"
ENV_SEED = "MODEL_FAULT_SEED"

ENV_ADMIN_HOST = "MODEL_ADMIN_HOST"
ENV_ADMIN_PORT = "MODEL_ADMIN_PORT"
ENV_ADMIN_TOKEN = "MODEL_ADMIN_TOKEN"
DEFAULT_ADMIN_HOST = "127.0.0.1"
DEFAULT_ADMIN_PORT = 9010
ADMIN_PATH = "/faults"
MAX_ADMIN_BODY_BYTES = 4096


class FaultConfigError(ValueError):
    pass


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    latency_distribution: str = "normal"
    error_rate: float = 0.0
    error_status: int = 503

    def __post_init__(self) -> None:
        for name in ("latency_ms", "latency_jitter_ms"):
            value = getattr(self, name)
            if not 0.0 <= value <= MAX_LATENCY_MS:
                raise FaultConfigError(f"{name} must be within [0, {MAX_LATENCY_MS:g}], got {value:g}")
        if self.latency_distribution not in DISTRIBUTIONS:
            raise FaultConfigError(
                f"latency_distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                f"got {self.latency_distribution!r}"
            )
        if not 0.0 <= self.error_rate <= 1.0:
            raise FaultConfigError(f"error_rate must be within [0, 1], got {self.error_rate:g}")
        if self.error_status not in ERROR_STATUSES:
            raise FaultConfigError(
                f"error_status must be one of {', '.join(map(str, ERROR_STATUSES))}, got {self.error_status}"
            )

    @property
    def active(self) -> bool:
        return self.latency_ms > 0 or self.latency_jitter_ms > 0 or self.error_rate > 0

    def updated(self, changes: Mapping[str, Any]) -> FaultConfig:
        """A copy with `changes` applied; rejects unknown keys and wrongly typed values."""
        if not isinstance(changes, Mapping):
            raise FaultConfigError("fault settings must be a JSON object")
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise FaultConfigError(f"unknown fault settings {unknown}; known: {sorted(known)}")
        typed: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "latency_distribution":
                if not isinstance(value, str):
                    raise FaultConfigError("latency_distribution must be a string")
                typed[key] = value
            elif key == "error_status":
                if type(value) is not int:
                    raise FaultConfigError("error_status must be an integer")
                typed[key] = value
            else:
                if type(value) not in (int, float):
                    raise FaultConfigError(f"{key} must be a number")
                typed[key] = float(value)
        return replace(self, **typed)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> FaultConfig:
        env = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return float(raw)
            except ValueError as exc:
                raise FaultConfigError(f"{name}={raw!r} is not a number") from exc

        return cls(
            latency_ms=number(ENV_LATENCY_MS, 0.0),
            latency_jitter_ms=number(ENV_JITTER_MS, 0.0),
            latency_distribution=env.get(ENV_DISTRIBUTION, "").strip() or "normal",
            error_rate=number(ENV_ERROR_RATE, 0.0),
            error_status=int(number(ENV_ERROR_STATUS, 503)),
        )


class SharedFaultConfig:
    """A FaultConfig in shared memory: written by the admin process, read by every worker.

    Must be created before the server forks (seldon-core builds the model object first, then forks).
    """

    def __init__(self, initial: FaultConfig) -> None:
        # latency_ms, jitter_ms, distribution index, error_rate, error_status
        self._values = multiprocessing.Array("d", 5, lock=True)
        self.set(initial)

    def get(self) -> FaultConfig:
        with self._values.get_lock():
            latency, jitter, dist, rate, status = self._values[:]
        return FaultConfig(latency, jitter, DISTRIBUTIONS[int(dist)], rate, int(status))

    def set(self, config: FaultConfig) -> None:
        with self._values.get_lock():
            self._values[:] = [
                config.latency_ms,
                config.latency_jitter_ms,
                float(DISTRIBUTIONS.index(config.latency_distribution)),
                config.error_rate,
                float(config.error_status),
            ]


class InjectedFault(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"injected fault: this call failed on purpose with HTTP {status} (error-rate knob)")
        self.status = status


class FaultInjector:
    def __init__(self, shared: SharedFaultConfig, seed: int | None = None) -> None:
        self.shared = shared
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def sample_delay_seconds(self, config: FaultConfig) -> float:
        if config.latency_jitter_ms <= 0:
            return config.latency_ms / 1000.0
        with self._rng_lock:
            if config.latency_distribution == "uniform":
                delay = self._rng.uniform(
                    config.latency_ms - config.latency_jitter_ms, config.latency_ms + config.latency_jitter_ms
                )
            else:
                delay = self._rng.gauss(config.latency_ms, config.latency_jitter_ms)
        return max(0.0, delay) / 1000.0

    def apply(self, sleep: Callable[[float], None] = time.sleep) -> FaultConfig:
        """Delay, then fail with the configured probability; returns the config in force."""
        config = self.shared.get()
        if not config.active:
            return config
        delay = self.sample_delay_seconds(config)
        if delay > 0:
            sleep(delay)
        if config.error_rate > 0:
            with self._rng_lock:
                fail = self._rng.random() < config.error_rate
            if fail:
                raise InjectedFault(config.error_status)
        return config


def seed_from_env(environ: Mapping[str, str] | None = None) -> int | None:
    raw = (os.environ if environ is None else environ).get(ENV_SEED, "").strip()
    return int(raw) if raw else None


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass(frozen=True)
class AdminSettings:
    host: str = DEFAULT_ADMIN_HOST
    port: int = DEFAULT_ADMIN_PORT
    token: str | None = None

    @property
    def enabled(self) -> bool:
        return self.port > 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AdminSettings:
        env = os.environ if environ is None else environ
        raw_port = env.get(ENV_ADMIN_PORT, "").strip()
        try:
            port = int(raw_port) if raw_port else DEFAULT_ADMIN_PORT
        except ValueError as exc:
            raise FaultConfigError(f"{ENV_ADMIN_PORT}={raw_port!r} is not a port number") from exc
        return cls(
            host=env.get(ENV_ADMIN_HOST, "").strip() or DEFAULT_ADMIN_HOST,
            port=port,
            token=env.get(ENV_ADMIN_TOKEN) or None,
        )


def authorise(client_host: str, authorization: str | None, token: str | None) -> HTTPStatus | None:
    """None when the caller may use the admin API, else the status to refuse it with.

    Without a token only loopback callers are served; with one, every caller must present it.
    """
    if token is None:
        return None if is_loopback(client_host) else HTTPStatus.FORBIDDEN
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return HTTPStatus.UNAUTHORIZED
    return None


def make_admin_server(shared: SharedFaultConfig, settings: AdminSettings) -> ThreadingHTTPServer:
    if not is_loopback(settings.host) and settings.token is None:
        raise FaultConfigError(
            f"refusing to expose the fault admin API on {settings.host} without {ENV_ADMIN_TOKEN}"
        )

    class AdminHandler(BaseHTTPRequestHandler):
        server_version = "modelserver-admin"

        def log_message(self, format: str, *args: Any) -> None:
            logger.info("admin %s - %s", self.client_address[0], format % args)

        def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            payload = (json.dumps(body, sort_keys=True) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _guard(self) -> bool:
            refusal = authorise(self.client_address[0], self.headers.get("Authorization"), settings.token)
            if refusal is not None:
                self._reply(refusal, {"error": "admin API: caller not allowed"})
                return False
            if self.path.split("?", 1)[0] != ADMIN_PATH:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"unknown path; use {ADMIN_PATH}"})
                return False
            return True

        def do_GET(self) -> None:
            if self._guard():
                self._reply(HTTPStatus.OK, asdict(shared.get()))

        def do_DELETE(self) -> None:
            if self._guard():
                shared.set(FaultConfig())
                logger.warning("fault knobs reset: all faults off")
                self._reply(HTTPStatus.OK, asdict(shared.get()))

        def _update(self) -> None:
            if not self._guard():
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_ADMIN_BODY_BYTES:
                self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
                return
            try:
                changes = json.loads(self.rfile.read(length) or b"{}")
                config = shared.get().updated(changes)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": f"body is not JSON: {exc}"})
                return
            except FaultConfigError as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            shared.set(config)
            logger.warning("fault knobs set: %s", asdict(config))
            self._reply(HTTPStatus.OK, asdict(config))

        do_POST = _update
        do_PUT = _update

    server = ThreadingHTTPServer((settings.host, settings.port), AdminHandler)
    server.daemon_threads = True
    return server


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies, so no admin server is orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        logger.debug("prctl unavailable; relying on the parent watch thread")


def serve_admin_forever(shared: SharedFaultConfig, settings: AdminSettings) -> None:
    """Run the admin API until the parent server process goes away."""
    if not settings.enabled:
        logger.info("fault admin API disabled (%s=0)", ENV_ADMIN_PORT)
        return
    parent = os.getppid()
    _die_with_parent()
    server = make_admin_server(shared, settings)

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        server.shutdown()

    threading.Thread(target=watch_parent, name="admin-parent-watch", daemon=True).start()
    logger.info("fault admin API on http://%s:%d%s", settings.host, server.server_address[1], ADMIN_PATH)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
