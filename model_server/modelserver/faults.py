"""Fault knobs for chaos experiments: added latency and an error rate on predict calls, and the
quality of the answers themselves (wrong classes, a dead class, output drift; see modelserver.quality).

Set at start through environment variables, changed at run time through a small admin HTTP
server. The configuration lives in shared memory created before seldon-core forks its server
processes, so the admin process and every gunicorn worker see the same values.

Environment (all off by default):
  MODEL_FAULT_LATENCY_MS            mean added latency per predict call, milliseconds
  MODEL_FAULT_LATENCY_JITTER_MS     spread: stddev for "normal", half-width for "uniform"
  MODEL_FAULT_LATENCY_DISTRIBUTION  "normal" (default) or "uniform"; samples are clipped at 0
  MODEL_FAULT_ERROR_RATE            fraction of predict calls answered with an error, 0..1
  MODEL_FAULT_ERROR_STATUS          HTTP status of those errors, 500 or 503 (default 503)
  MODEL_FAULT_WRONG_CLASS_SHARE     share of answers replaced by a class the model did not answer, 0..1
  MODEL_FAULT_DEAD_CLASS            a class 0..9 that is never answered ("none" or unset: off)
  MODEL_FAULT_OUTPUT_SHIFT_CLASS    the class output_shift moves answers to ("none" or unset: none)
  MODEL_FAULT_OUTPUT_SHIFT_SHARE    share of the eligible answers moved to that class, 0..1
  MODEL_FAULT_OUTPUT_SHIFT_MODE     "any" (default): every answer not already that class is eligible;
                                    "keep_accuracy": only answers that are wrong and stay wrong
  MODEL_FAULT_SEED                  seed for the fault dice (default: random): latency and errors per worker
                                    (seed + pid), wrong classes from the seed and the answer's position

Shares of answers are applied in millionths (a share is rounded to 6 decimal places), exactly: see
modelserver.quality.

Admin API (off unless MODEL_ADMIN_ENABLED=1; then MODEL_ADMIN_TOKEN is required, or the server refuses
to start):
  MODEL_ADMIN_ENABLED               1/true/yes/on to serve it; unset, 0/false/no/off: not served at all
  MODEL_ADMIN_TOKEN                 bearer token every request must present (at least 16 characters)
  MODEL_ADMIN_HOST / MODEL_ADMIN_PORT  bind address, default 127.0.0.1:9010
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
import re
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
# The digits classes the quality knobs may name.
N_CLASSES = 10
SHIFT_MODES = ("any", "keep_accuracy")
# Shares of answers are counted in millionths: exact integer arithmetic, no float drift over long runs.
SHARE_RESOLUTION = 1_000_000

ENV_LATENCY_MS = "MODEL_FAULT_LATENCY_MS"
ENV_JITTER_MS = "MODEL_FAULT_LATENCY_JITTER_MS"
ENV_DISTRIBUTION = "MODEL_FAULT_LATENCY_DISTRIBUTION"
ENV_ERROR_RATE = "MODEL_FAULT_ERROR_RATE"
ENV_ERROR_STATUS = "MODEL_FAULT_ERROR_STATUS"
ENV_WRONG_CLASS_SHARE = "MODEL_FAULT_WRONG_CLASS_SHARE"
ENV_DEAD_CLASS = "MODEL_FAULT_DEAD_CLASS"
ENV_SHIFT_CLASS = "MODEL_FAULT_OUTPUT_SHIFT_CLASS"
ENV_SHIFT_SHARE = "MODEL_FAULT_OUTPUT_SHIFT_SHARE"
ENV_SHIFT_MODE = "MODEL_FAULT_OUTPUT_SHIFT_MODE"
ENV_SEED = "MODEL_FAULT_SEED"

ENV_ADMIN_ENABLED = "MODEL_ADMIN_ENABLED"
ENV_ADMIN_HOST = "MODEL_ADMIN_HOST"
ENV_ADMIN_PORT = "MODEL_ADMIN_PORT"
ENV_ADMIN_TOKEN = "MODEL_ADMIN_TOKEN"
DEFAULT_ADMIN_HOST = "127.0.0.1"
DEFAULT_ADMIN_PORT = 9010
ADMIN_PATH = "/faults"
MAX_ADMIN_BODY_BYTES = 4096
MIN_ADMIN_TOKEN_CHARS = 16
# A socket that sends less than it announced, or nothing, is dropped after this long: never a hung handler.
ADMIN_SOCKET_TIMEOUT_S = 5.0
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,16}$")
_NO_CLASS = ("", "none", "null", "off")
_CLASS_KNOBS = ("dead_class", "output_shift_class")
_STRING_KNOBS = ("latency_distribution", "output_shift_mode")


class FaultConfigError(ValueError):
    pass


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    latency_distribution: str = "normal"
    error_rate: float = 0.0
    error_status: int = 503
    # Quality knobs (modelserver.quality applies them to the model's answers).
    wrong_class_share: float = 0.0
    dead_class: int | None = None
    output_shift_class: int | None = None
    output_shift_share: float = 0.0
    output_shift_mode: str = "any"

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
        for name in ("wrong_class_share", "output_shift_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultConfigError(f"{name} must be within [0, 1], got {value:g}")
            if value > 0 and round(value * SHARE_RESOLUTION) == 0:
                raise FaultConfigError(
                    f"{name} is applied in millionths: use 0 or at least {1 / SHARE_RESOLUTION:g}, got {value:g}"
                )
        for name in _CLASS_KNOBS:
            value = getattr(self, name)
            if value is not None and (type(value) is not int or not 0 <= value < N_CLASSES):
                raise FaultConfigError(f"{name} must be a class 0..{N_CLASSES - 1} or null (none), got {value!r}")
        if self.output_shift_mode not in SHIFT_MODES:
            raise FaultConfigError(
                f"output_shift_mode must be one of {', '.join(SHIFT_MODES)}, got {self.output_shift_mode!r}"
            )
        if self.output_shift_share > 0 and self.output_shift_class is None:
            raise FaultConfigError(
                "output_shift_share > 0 needs output_shift_class: the class the answers move to"
            )
        if self.output_shift_class is not None and self.output_shift_class == self.dead_class:
            raise FaultConfigError(
                f"output_shift_class {self.output_shift_class} is the dead_class: answers cannot move to a class "
                "that is never answered"
            )

    @property
    def serving_active(self) -> bool:
        """Latency or errors: faults of the call, applied before the model runs."""
        return self.latency_ms > 0 or self.latency_jitter_ms > 0 or self.error_rate > 0

    @property
    def quality_active(self) -> bool:
        """Faults of the answers, applied after the model computed them."""
        return (
            self.wrong_class_share > 0
            or self.dead_class is not None
            or (self.output_shift_share > 0 and self.output_shift_class is not None)
        )

    @property
    def active(self) -> bool:
        return self.serving_active or self.quality_active

    def quality_knobs(self) -> tuple[float, int | None, int | None, float, str]:
        return (
            self.wrong_class_share,
            self.dead_class,
            self.output_shift_class,
            self.output_shift_share,
            self.output_shift_mode,
        )

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
            if key in _STRING_KNOBS:
                if not isinstance(value, str):
                    raise FaultConfigError(f"{key} must be a string")
                typed[key] = value
            elif key == "error_status":
                if type(value) is not int:
                    raise FaultConfigError("error_status must be an integer")
                typed[key] = value
            elif key in _CLASS_KNOBS:
                if value is not None and type(value) is not int:
                    raise FaultConfigError(
                        f"{key} must be a class 0..{N_CLASSES - 1} (a JSON integer) or null, got {value!r}"
                    )
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

        def label(name: str) -> int | None:
            raw = env.get(name, "").strip()
            if raw.lower() in _NO_CLASS:
                return None
            if not raw.isascii() or not raw.isdigit():
                raise FaultConfigError(f"{name}={raw!r} is not a class 0..{N_CLASSES - 1} or none")
            return int(raw)

        return cls(
            latency_ms=number(ENV_LATENCY_MS, 0.0),
            latency_jitter_ms=number(ENV_JITTER_MS, 0.0),
            latency_distribution=env.get(ENV_DISTRIBUTION, "").strip() or "normal",
            error_rate=number(ENV_ERROR_RATE, 0.0),
            error_status=int(number(ENV_ERROR_STATUS, 503)),
            wrong_class_share=number(ENV_WRONG_CLASS_SHARE, 0.0),
            dead_class=label(ENV_DEAD_CLASS),
            output_shift_class=label(ENV_SHIFT_CLASS),
            output_shift_share=number(ENV_SHIFT_SHARE, 0.0),
            output_shift_mode=env.get(ENV_SHIFT_MODE, "").strip() or "any",
        )


@dataclass(frozen=True)
class AnswerTicket:
    """Positions reserved for a batch of answers: `first` is the position of the batch's first answer among
    all answers since the quality knobs took their current values (`generation`), over every process."""

    config: FaultConfig
    generation: int
    first: int


class SharedFaultConfig:
    """A FaultConfig in shared memory: written by the admin process, read by every worker.

    Also the quality faults' answer counters, so shares of answers are exact over all workers together:
    how many answers (and answers eligible for output_shift) were given since the quality knobs last
    changed. Setting the quality knobs to different values starts a new generation and restarts both
    counters; setting only latency or errors, or the same quality values again, leaves them running.

    Must be created before the server forks (seldon-core builds the model object first, then forks).
    """

    # latency_ms, jitter_ms, distribution index, error_rate, error_status, wrong_class_share, dead_class,
    # output_shift_class, output_shift_share, output_shift_mode index (classes: -1 for none); then the
    # generation and the two counters. Doubles hold whole numbers exactly up to 2**53.
    _CONFIG_SLOTS = 10
    _QUALITY = slice(5, 10)
    _GENERATION, _ANSWERS, _SHIFT_ELIGIBLE = 10, 11, 12

    def __init__(self, initial: FaultConfig) -> None:
        self._values = multiprocessing.Array("d", 13, lock=True)
        self.set(initial)

    @staticmethod
    def _encode(config: FaultConfig) -> list[float]:
        return [
            config.latency_ms,
            config.latency_jitter_ms,
            float(DISTRIBUTIONS.index(config.latency_distribution)),
            config.error_rate,
            float(config.error_status),
            config.wrong_class_share,
            -1.0 if config.dead_class is None else float(config.dead_class),
            -1.0 if config.output_shift_class is None else float(config.output_shift_class),
            config.output_shift_share,
            float(SHIFT_MODES.index(config.output_shift_mode)),
        ]

    @staticmethod
    def _decode(values: list[float]) -> FaultConfig:
        latency, jitter, dist, rate, status, wrong, dead, shift_class, shift_share, mode = values
        return FaultConfig(
            latency,
            jitter,
            DISTRIBUTIONS[int(dist)],
            rate,
            int(status),
            wrong,
            None if dead < 0 else int(dead),
            None if shift_class < 0 else int(shift_class),
            shift_share,
            SHIFT_MODES[int(mode)],
        )

    def get(self) -> FaultConfig:
        with self._values.get_lock():
            values = self._values[: self._CONFIG_SLOTS]
        return self._decode(values)

    def set(self, config: FaultConfig) -> None:
        encoded = self._encode(config)
        with self._values.get_lock():
            if self._values[self._QUALITY] != encoded[self._QUALITY]:
                self._values[self._GENERATION] += 1
                self._values[self._ANSWERS] = 0.0
                self._values[self._SHIFT_ELIGIBLE] = 0.0
            self._values[: self._CONFIG_SLOTS] = encoded

    def reserve_answers(self, count: int) -> AnswerTicket:
        """The config in force and the positions of the next `count` answers, taken together."""
        with self._values.get_lock():
            values = self._values[: self._CONFIG_SLOTS]
            generation = int(self._values[self._GENERATION])
            first = int(self._values[self._ANSWERS])
            self._values[self._ANSWERS] = float(first + count)
        return AnswerTicket(self._decode(values), generation, first)

    def reserve_shift_eligible(self, generation: int, count: int) -> int | None:
        """The position of the first of `count` answers eligible for output_shift, or None when the
        quality knobs changed since `generation` was reserved (the batch is then not shifted)."""
        with self._values.get_lock():
            if int(self._values[self._GENERATION]) != generation:
                return None
            first = int(self._values[self._SHIFT_ELIGIBLE])
            self._values[self._SHIFT_ELIGIBLE] = float(first + count)
        return first


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
        if not config.serving_active:
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
    """Where the fault admin API listens, and whether at all. Off unless explicitly enabled; enabled, it
    always requires a bearer token (checked here, so a server so misconfigured refuses to start)."""

    enabled: bool = False
    host: str = DEFAULT_ADMIN_HOST
    port: int = DEFAULT_ADMIN_PORT
    token: str | None = None

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        if self.token is None:
            raise FaultConfigError(
                f"{ENV_ADMIN_ENABLED} is set but {ENV_ADMIN_TOKEN} is not: refusing to start the fault admin API "
                f"without a bearer token (set {ENV_ADMIN_TOKEN}, or unset {ENV_ADMIN_ENABLED})"
            )
        if len(self.token) < MIN_ADMIN_TOKEN_CHARS or any(c.isspace() for c in self.token):
            raise FaultConfigError(
                f"{ENV_ADMIN_TOKEN} must be at least {MIN_ADMIN_TOKEN_CHARS} characters without whitespace"
            )
        if not 0 < self.port < 65536:
            raise FaultConfigError(f"{ENV_ADMIN_PORT} must be a port in 1..65535 when the admin API is enabled")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AdminSettings:
        env = os.environ if environ is None else environ
        flag = env.get(ENV_ADMIN_ENABLED, "").strip().lower()
        if flag not in _TRUE + _FALSE:
            raise FaultConfigError(f"{ENV_ADMIN_ENABLED}={flag!r}: use 1 to enable the fault admin API, 0 or unset")
        raw_port = env.get(ENV_ADMIN_PORT, "").strip()
        try:
            port = int(raw_port) if raw_port else DEFAULT_ADMIN_PORT
        except ValueError as exc:
            raise FaultConfigError(f"{ENV_ADMIN_PORT}={raw_port!r} is not a port number") from exc
        return cls(
            enabled=flag in _TRUE,
            host=env.get(ENV_ADMIN_HOST, "").strip() or DEFAULT_ADMIN_HOST,
            port=port,
            token=env.get(ENV_ADMIN_TOKEN) or None,
        )


def authorise(authorization: str | None, token: str) -> HTTPStatus | None:
    """None when the request presents the token (`Authorization: Bearer <token>`), else 401."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        return HTTPStatus.UNAUTHORIZED
    return None


def body_length(values: list[str]) -> tuple[HTTPStatus, str] | int:
    """The body length a request announced in its Content-Length header(s), or the status to refuse it with.

    Missing: 411. Several, or not a plain non-negative decimal (negative, signed, spaced, hex): 400. More
    than MAX_ADMIN_BODY_BYTES: 413. Only a length so checked is ever read.
    """
    if not values:
        return HTTPStatus.LENGTH_REQUIRED, "Content-Length required"
    if len(values) > 1:
        return HTTPStatus.BAD_REQUEST, "more than one Content-Length header"
    raw = values[0]
    if not _CONTENT_LENGTH.fullmatch(raw):
        return HTTPStatus.BAD_REQUEST, f"Content-Length {raw[:20]!r} is not a non-negative whole number"
    length = int(raw)
    if length > MAX_ADMIN_BODY_BYTES:
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body of {length} bytes; at most {MAX_ADMIN_BODY_BYTES}"
    return length


def make_admin_server(shared: SharedFaultConfig, settings: AdminSettings) -> ThreadingHTTPServer:
    if not settings.enabled or settings.token is None:
        raise FaultConfigError(
            f"the fault admin API is off: it needs {ENV_ADMIN_ENABLED}=1 and {ENV_ADMIN_TOKEN}"
        )
    token = settings.token

    class AdminHandler(BaseHTTPRequestHandler):
        server_version = "modelserver-admin"
        timeout = ADMIN_SOCKET_TIMEOUT_S  # on the socket: a slow or silent client cannot hold a thread

        def log_message(self, format: str, *args: Any) -> None:
            logger.info("admin %s - %s", self.client_address[0], format % args)

        def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            payload = (json.dumps(body, sort_keys=True) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Bearer realm="fault admin"')
            self.end_headers()
            self.wfile.write(payload)

        def _guard(self) -> bool:
            refusal = authorise(self.headers.get("Authorization"), token)
            if refusal is not None:
                self._reply(refusal, {"error": "admin API: missing or wrong bearer token"})
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
            if self.headers.get("Transfer-Encoding") is not None:
                self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length, not Transfer-Encoding"})
                return
            length = body_length(self.headers.get_all("Content-Length") or [])
            if not isinstance(length, int):
                status, why = length
                self._reply(status, {"error": why})
                return
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                self._reply(HTTPStatus.REQUEST_TIMEOUT, {"error": "body shorter than its Content-Length"})
                return
            if len(body) != length:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": "body shorter than its Content-Length"})
                return
            try:
                changes = json.loads(body or b"{}")
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
        logger.info("fault admin API off (set %s=1 and %s to serve it)", ENV_ADMIN_ENABLED, ENV_ADMIN_TOKEN)
        return
    parent = os.getppid()
    _die_with_parent()
    server = make_admin_server(shared, settings)
    if not is_loopback(settings.host):
        logger.warning("fault admin API bound to %s: reachable beyond this host (token required)", settings.host)

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
