"""Seldon Core v1 Python microservice serving a digits classifier artifact.

    seldon-core-microservice modelserver.server.DigitsClassifier --service-type MODEL

Configuration (environment, or seldon `parameters` of the same lower-case name):
  MODEL_URI / model_uri                 file:///models/digits/2.0.0 or a plain path (required)
  MODEL_VERSION / model_version         overrides the version read from the model card
  MODEL_MAX_BATCH_SIZE / max_batch_size rows per request, default 1000
plus the fault knobs and admin API settings in modelserver.faults (quality faults: modelserver.quality).

REST (seldon protocol, port PREDICTIVE_UNIT_HTTP_SERVICE_PORT, default 9000):
  POST /api/v1.0/predictions  {"data": {"ndarray": [[64 pixel values 0..16], ...]}}
       answers {"data": {"names": ["class"], "ndarray": [label, ...]},
                "meta": {"tags": {"served_model_version": "2.0.0", ...}}}; with
       {"meta": {"tags": {"return_proba": true}}} it answers per-class probabilities
       (names "0".."9") instead.
  POST /api/v1.0/feedback     {"request": ..., "response": ..., "reward": r, "truth": {"data": ...}}
       outcomes are counted under the version named by the response's served_model_version tag,
       whichever server receives the feedback (Seldon routes feedback by traffic weight, not by who
       answered); "unknown" when the response carries none.
  GET  /health/status         503 until the model is loaded, then the model's identity
Metrics: port PREDICTIVE_UNIT_METRICS_SERVICE_PORT (default 6000), path
PREDICTIVE_UNIT_METRICS_ENDPOINT (default /metrics; Seldon's operator sets /prometheus).
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import joblib
import numpy as np
from google.protobuf import json_format
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.proto import prediction_pb2

from modelserver import faults, quality
from modelserver.modelcard import ModelCardError, read_model_card, sha256_file
from modelserver.uri import resolve_model_uri
from modelserver.validation import InvalidInput, parse_features, parse_labels

logger = logging.getLogger(__name__)

N_FEATURES = 64
N_CLASSES = 10
PIXEL_RANGE = (0.0, 16.0)
DEFAULT_MAX_BATCH_SIZE = 1000

# Metric names (Prometheus). Seldon adds the labels method, worker_id, model_name, model_version, ...
# Its own model_version label comes from the container image tag and overrides a custom tag of that
# name (seldon_core/metrics.py: DEFAULT_LABELS, merged over the tags in SeldonMetrics._merge_labels), so
# the artifact's version travels as `artifact_version` (this server's model) and, on feedback outcomes,
# as `served_model_version` (the model that produced the answer the feedback judges). Answers are counted
# as served, after the quality faults: predictions_total{class, served_model_version} is the served
# predicted-class distribution of that version.
PREDICTIONS = "predictions_total"
ALTERED_ANSWERS = "altered_answers_total"
INVALID_REQUESTS = "invalid_requests_total"
INJECTED_ERRORS = "injected_errors_total"
FEEDBACK = "feedback_total"
FEEDBACK_REWARD = "feedback_reward_total"
FEEDBACK_OUTCOMES = "feedback_outcomes_total"
# The same outcomes by the true class: a class's recall (a model blind to one class shows here first).
FEEDBACK_CLASS_OUTCOMES = "feedback_class_outcomes_total"
INFERENCE_TIME = "inference_seconds"
FAULT_LATENCY = "fault_latency_ms"
FAULT_JITTER = "fault_latency_jitter_ms"
FAULT_ERROR_RATE = "fault_error_rate"
FAULT_WRONG_CLASS_SHARE = "fault_wrong_class_share"
FAULT_DEAD_CLASS = "fault_dead_class"  # -1: none
FAULT_SHIFT_CLASS = "fault_output_shift_class"  # -1: none
FAULT_SHIFT_SHARE = "fault_output_shift_share"
FAULT_SHIFT_KEEP_ACCURACY = "fault_output_shift_keep_accuracy"  # 1 in keep_accuracy mode, else 0
MODEL_INFO = "model_artifact_info"

BAD_DATA_REASON = "MICROSERVICE_BAD_DATA"

# The tag in every answer's meta.tags naming the version of the model that produced it, and the label of
# feedback outcomes that carries it back. Not `model_version`: seldon-core owns that label (see above).
SERVED_VERSION_TAG = "served_model_version"
# Feedback whose response names no (valid) version: never counted as the receiving server's own.
UNKNOWN_VERSION = "unknown"
# Versions come from clients (the feedback's response): only a label-safe name becomes a label value, and
# past this many distinct ones per process the rest are counted together, so series stay bounded.
MAX_FEEDBACK_VERSIONS = 256
OTHER_VERSIONS = "other"
_VERSION = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _setting(given: Any, env_name: str, environ: Mapping[str, str]) -> str | None:
    """A seldon parameter when given, else the environment variable."""
    if given is not None and given != "":
        return str(given)
    value = environ.get(env_name, "").strip()
    return value or None


def served_version(response: Any) -> str:
    """The version a response says produced it (its meta.tags.served_model_version), else "unknown".

    A value that is not a plain version name (a label-safe string of at most 63 characters) is
    "unknown" too: it comes from the client and must not become an arbitrary label value.
    """
    meta = response.get("meta") if isinstance(response, dict) else None
    tags = meta.get("tags") if isinstance(meta, dict) else None
    value = tags.get(SERVED_VERSION_TAG) if isinstance(tags, dict) else None
    if isinstance(value, str) and len(value) <= 63 and _VERSION.fullmatch(value):
        return value
    if value is not None:
        logger.info("feedback response has an unusable %s tag; counted as %s", SERVED_VERSION_TAG, UNKNOWN_VERSION)
    return UNKNOWN_VERSION


class DigitsClassifier:
    """The user model class seldon-core instantiates once, before it forks its server processes."""

    def __init__(
        self,
        model_uri: str | None = None,
        model_version: str | None = None,
        max_batch_size: int | None = None,
    ) -> None:
        env = os.environ
        uri = _setting(model_uri, "MODEL_URI", env)
        if uri is None:
            raise ValueError("no model: set MODEL_URI or the model_uri parameter (file:///path or a path)")
        # Resolve and read the card now, so a bad URI fails at start rather than in every worker.
        self.location = resolve_model_uri(uri)
        try:
            self.card: dict[str, Any] | None = read_model_card(self.location.version_dir)
        except ModelCardError as exc:
            logger.warning("serving without a model card: %s", exc)
            self.card = None
        self.version = (
            _setting(model_version, "MODEL_VERSION", env)
            or (self.card or {}).get("version")
            or self.location.version_dir.name
        )
        if len(self.version) > 63 or not _VERSION.fullmatch(self.version):
            logger.warning(
                "version %r is not a plain version name ([A-Za-z0-9._-], at most 63 characters): feedback on "
                "this model's answers will be counted as %r", self.version, UNKNOWN_VERSION,
            )
        batch_setting = _setting(max_batch_size, "MODEL_MAX_BATCH_SIZE", env)
        self.max_batch_size = int(batch_setting) if batch_setting else DEFAULT_MAX_BATCH_SIZE
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {self.max_batch_size}")

        # Shared memory must exist before seldon-core forks, so every process sees one fault config.
        self.fault_config = faults.SharedFaultConfig(faults.FaultConfig.from_env())
        self.fault_seed = faults.seed_from_env()
        # Wrong classes are drawn per answer position from one seed all workers share, so it is chosen here,
        # before the fork, when MODEL_FAULT_SEED does not give it.
        self.quality_seed = (
            self.fault_seed if self.fault_seed is not None else random.SystemRandom().randrange(2**32)
        )
        self.admin_settings = faults.AdminSettings.from_env()
        self._injector: faults.FaultInjector | None = None
        self._quality: quality.QualityFaults | None = None

        self.model: Any = None
        self.artifact_sha256: str | None = None
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._feedback_versions: set[str] = set()
        logger.info(
            "model %s version %s from %s (max batch %d, faults %s)",
            (self.card or {}).get("model", "digits"),
            self.version,
            self.location.artifact_path,
            self.max_batch_size,
            self.fault_config.get(),
        )

    # --- lifecycle -------------------------------------------------------------------------------

    def load(self) -> None:
        """Called by seldon-core in each server process after the fork."""
        sha256 = sha256_file(self.location.artifact_path)
        expected = (self.card or {}).get("artifact", {}).get("sha256")
        if expected is not None and sha256 != expected:
            # A runtime error, not AttributeError: seldon-core silently swallows those from load().
            raise RuntimeError(
                f"artifact {self.location.artifact_path} has sha256 {sha256}, its model card says {expected}"
            )
        model = joblib.load(self.location.artifact_path)
        n_features = getattr(model, "n_features_in_", N_FEATURES)
        if n_features != N_FEATURES:
            raise RuntimeError(f"model expects {n_features} features, this server validates for {N_FEATURES}")
        # A fresh RNG per process: forked workers must not share one dice sequence.
        seed = None if self.fault_seed is None else self.fault_seed + os.getpid()
        self._injector = faults.FaultInjector(self.fault_config, seed)
        self._quality = quality.QualityFaults(self.fault_config, self.quality_seed)
        self.artifact_sha256 = sha256
        self.model = model
        logger.info("loaded %s (sha256 %s) in pid %d", self.version, sha256[:12], os.getpid())

    @property
    def ready(self) -> bool:
        return self.model is not None

    def health_status(self) -> dict[str, Any]:
        if not self.ready:
            raise SeldonMicroserviceException(
                "model not loaded yet", status_code=503, reason="MICROSERVICE_NOT_READY"
            )
        return self.identity()

    def identity(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "loading",
            "model": (self.card or {}).get("model", "digits"),
            "version": self.version,
            "artifact_sha256": self.artifact_sha256,
            "model_uri": self.location.uri,
            "pid": os.getpid(),
        }

    def init_metadata(self) -> dict[str, Any]:
        return {
            "name": (self.card or {}).get("model", "digits"),
            "versions": [self.version],
            "platform": "seldon",
            "inputs": [{"name": "pixels", "datatype": "FP64", "shape": [-1, N_FEATURES]}],
            "outputs": [{"name": "class", "datatype": "INT64", "shape": [-1]}],
            "custom": {"metrics_version_label": "artifact_version"},
        }

    def custom_service(self) -> None:
        """seldon-core runs this in its own process: the fault admin API."""
        faults.serve_admin_forever(self.fault_config, self.admin_settings)

    # --- predictions -----------------------------------------------------------------------------

    def predict_raw(self, request: Any) -> Any:
        """Whole Seldon message in, whole message out, so malformed payloads get a 400 from us.

        REST hands over the decoded JSON; gRPC a SeldonMessage, answered in kind.
        """
        if isinstance(request, prediction_pb2.SeldonMessage):
            response = self._predict_message(json_format.MessageToDict(request))
            # Protobuf drops zero values and seldon-core then fails on the missing field: send none.
            response["meta"]["metrics"] = [m for m in response["meta"]["metrics"] if m["value"] != 0]
            return json_format.ParseDict(response, prediction_pb2.SeldonMessage())
        return self._predict_message(request)

    def _predict_message(self, request: Any) -> dict[str, Any]:
        self._require_ready()
        self._apply_faults()
        try:
            features = parse_features(request, N_FEATURES, self.max_batch_size, PIXEL_RANGE)
            return_proba = self._wants_proba(request)
        except InvalidInput as exc:
            self._count_invalid(exc)
            raise SeldonMicroserviceException(exc.message, status_code=400, reason=BAD_DATA_REASON) from exc

        started = time.perf_counter()
        probabilities = self.model.predict_proba(features)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        answers = self._answer(probabilities, features)
        labels = answers.labels

        self._record_predictions(labels, elapsed_ms, answers.altered)
        if return_proba:
            data = {
                "names": [str(c) for c in answers.classes],
                "ndarray": np.round(answers.probabilities, 6).tolist(),
            }
        else:
            data = {"names": ["class"], "ndarray": [int(label) for label in labels]}
        tags = {"model_version": self.version, SERVED_VERSION_TAG: self.version}
        meta: dict[str, Any] = {"tags": tags, "metrics": self.metrics()}
        if isinstance(request, dict) and isinstance(request.get("meta"), dict) and "puid" in request["meta"]:
            meta["puid"] = request["meta"]["puid"]
        return {"data": data, "meta": meta}

    def _answer(self, probabilities: np.ndarray, features: np.ndarray) -> quality.Answers:
        """The answers served for the model's probabilities: after the quality faults, when any are on."""
        assert self._quality is not None
        return self._quality.apply(probabilities, np.asarray(self.model.classes_), features)

    def predict(self, X: np.ndarray, features_names: Any = None, **kwargs: Any) -> np.ndarray:
        """In-process convenience (and seldon's non-raw fallback): the model's own class labels for a 2-D
        array, without any faults."""
        self._require_ready()
        rows = np.asarray(X).tolist()
        features = parse_features({"data": {"ndarray": rows}}, N_FEATURES, self.max_batch_size, PIXEL_RANGE)
        return np.asarray(self.model.predict(features))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        self._require_ready()
        rows = np.asarray(X).tolist()
        features = parse_features({"data": {"ndarray": rows}}, N_FEATURES, self.max_batch_size, PIXEL_RANGE)
        return np.asarray(self.model.predict_proba(features))

    @staticmethod
    def _wants_proba(request: dict[str, Any]) -> bool:
        meta = request.get("meta")
        tags = meta.get("tags") if isinstance(meta, dict) else None
        if not isinstance(tags, dict) or "return_proba" not in tags:
            return False
        flag = tags["return_proba"]
        if not isinstance(flag, bool):
            raise InvalidInput("bad_meta", f"meta.tags.return_proba must be true or false, got {flag!r}")
        return flag

    def _require_ready(self) -> None:
        if not self.ready:
            raise SeldonMicroserviceException(
                "model not loaded yet", status_code=503, reason="MICROSERVICE_NOT_READY"
            )

    def _apply_faults(self) -> None:
        assert self._injector is not None
        try:
            self._injector.apply()
        except faults.InjectedFault as fault:
            self._queue_metrics([self._counter(INJECTED_ERRORS, 1, status=str(fault.status))])
            raise SeldonMicroserviceException(
                str(fault), status_code=fault.status, reason="INJECTED_FAULT"
            ) from fault

    # --- feedback --------------------------------------------------------------------------------

    def send_feedback_raw(self, feedback: prediction_pb2.Feedback) -> prediction_pb2.SeldonMessage:
        """Count feedback and, given the truth, whether the served predictions were right.

        The predictions compared are the feedback's `response` when it has one, else this model's
        answer for the feedback's `request` (as it serves it now, quality faults included). Outcomes are
        counted under the version of the model that produced the predictions compared: the response's
        served_model_version tag ("unknown" without one), or this model's own when it answered the
        request itself.
        """
        self._require_ready()
        message = json_format.MessageToDict(feedback)
        try:
            correct, incorrect, served_by, by_class = self._score_feedback(message)
        except InvalidInput as exc:
            self._count_invalid(exc)
            raise SeldonMicroserviceException(exc.message, status_code=400, reason=BAD_DATA_REASON) from exc
        reward = float(feedback.reward)
        queued = [self._counter(FEEDBACK, 1), self._counter(FEEDBACK_REWARD, reward)]
        labels = {SERVED_VERSION_TAG: self._bounded_version(served_by)}
        if correct:
            queued.append(self._counter(FEEDBACK_OUTCOMES, correct, outcome="correct", **labels))
        if incorrect:
            queued.append(self._counter(FEEDBACK_OUTCOMES, incorrect, outcome="incorrect", **labels))
        for (true_class, outcome), count in sorted(by_class.items()):
            queued.append(self._counter(FEEDBACK_CLASS_OUTCOMES, count, outcome=outcome,
                                        true_class=str(true_class), **labels))
        self._queue_metrics(queued)
        answer = {
            "jsonData": {"accepted": True, "reward": reward, "correct": correct, "incorrect": incorrect,
                         SERVED_VERSION_TAG: served_by},
            # Protobuf drops zero values and seldon-core then fails on the missing field: send none.
            "meta": {"tags": {"model_version": self.version}, "metrics": self._drain_nonzero()},
        }
        return json_format.ParseDict(answer, prediction_pb2.SeldonMessage())

    def _score_feedback(self, message: dict[str, Any]) -> tuple[int, int, str, dict[tuple[int, str], int]]:
        """Correct and incorrect predictions, the version of the model that made them, and the outcomes by
        (true class, "correct" | "incorrect")."""
        if "truth" not in message:
            return 0, 0, UNKNOWN_VERSION, {}
        truth = parse_labels(message["truth"], "truth", N_CLASSES)
        if "response" in message and "data" in message["response"]:
            predicted = parse_labels(message["response"], "response", N_CLASSES)
            served_by = served_version(message["response"])
        elif "request" in message:
            try:
                features = parse_features(message["request"], N_FEATURES, self.max_batch_size, PIXEL_RANGE)
            except InvalidInput as exc:
                raise InvalidInput(exc.reason, f"feedback request: {exc.message}") from exc
            answers = self._answer(self.model.predict_proba(features), features)
            self._count_altered(answers.altered)
            predicted = np.asarray(answers.labels, dtype=np.int64)
            served_by = self.version  # this model answered the request just now: its own outcome
        else:
            raise InvalidInput("bad_feedback", "feedback has a truth but neither a request nor a response")
        if len(predicted) != len(truth):
            raise InvalidInput(
                "bad_feedback", f"truth has {len(truth)} labels but there are {len(predicted)} predictions"
            )
        right = predicted == truth
        by_class: dict[tuple[int, str], int] = {}
        for true_class, was_right in zip(truth.tolist(), right.tolist(), strict=True):
            key = (int(true_class), "correct" if was_right else "incorrect")
            by_class[key] = by_class.get(key, 0) + 1
        correct = int(np.sum(right))
        return correct, len(truth) - correct, served_by, by_class

    def _bounded_version(self, version: str) -> str:
        """The version as a label value, or OTHER_VERSIONS once this process has seen too many."""
        with self._pending_lock:
            if version in self._feedback_versions:
                return version
            if len(self._feedback_versions) >= MAX_FEEDBACK_VERSIONS:
                return OTHER_VERSIONS
            self._feedback_versions.add(version)
            return version

    # --- metrics ---------------------------------------------------------------------------------

    def metrics(self) -> list[dict[str, Any]]:
        """seldon-core's custom-metrics hook: pending counters plus the current gauges.

        seldon-core calls it after health checks; the raw predict path calls it itself and
        returns the result in meta.metrics, where seldon-core picks it up.
        """
        config = self.fault_config.get()
        gauges = [
            self._gauge(FAULT_LATENCY, config.latency_ms),
            self._gauge(FAULT_JITTER, config.latency_jitter_ms),
            self._gauge(FAULT_ERROR_RATE, config.error_rate),
            self._gauge(FAULT_WRONG_CLASS_SHARE, config.wrong_class_share),
            self._gauge(FAULT_DEAD_CLASS, -1.0 if config.dead_class is None else float(config.dead_class)),
            self._gauge(
                FAULT_SHIFT_CLASS, -1.0 if config.output_shift_class is None else float(config.output_shift_class)
            ),
            self._gauge(FAULT_SHIFT_SHARE, config.output_shift_share),
            self._gauge(FAULT_SHIFT_KEEP_ACCURACY, 1.0 if config.output_shift_mode == "keep_accuracy" else 0.0),
            self._gauge(MODEL_INFO, 1.0, artifact_sha256=self.artifact_sha256 or "unknown"),
        ]
        return self._drain() + gauges

    def _record_predictions(self, labels: np.ndarray, elapsed_ms: float, altered: Mapping[str, int]) -> None:
        """Count the answers as served (after the quality faults), by class and by the fault that altered them."""
        values, counts = np.unique(labels, return_counts=True)
        queued = [
            self._counter(PREDICTIONS, int(n), **{"class": str(v), SERVED_VERSION_TAG: self.version})
            for v, n in zip(values, counts, strict=True)
        ]
        queued.extend(self._counter(ALTERED_ANSWERS, n, fault=kind) for kind, n in sorted(altered.items()))
        queued.append({"type": "TIMER", "key": INFERENCE_TIME, "value": elapsed_ms, "tags": self._tags()})
        self._queue_metrics(queued)

    def _count_altered(self, altered: Mapping[str, int]) -> None:
        self._queue_metrics([self._counter(ALTERED_ANSWERS, n, fault=kind) for kind, n in sorted(altered.items())])

    def _count_invalid(self, exc: InvalidInput) -> None:
        logger.info("rejected request (%s): %s", exc.reason, exc.message)
        self._queue_metrics([self._counter(INVALID_REQUESTS, 1, reason=exc.reason)])

    def _queue_metrics(self, metrics: list[dict[str, Any]]) -> None:
        # Metrics reach seldon-core only with a successful answer, so errors wait for the next one.
        with self._pending_lock:
            self._pending.extend(metrics)

    def _drain(self) -> list[dict[str, Any]]:
        with self._pending_lock:
            drained, self._pending = self._pending, []
        return drained

    def _drain_nonzero(self) -> list[dict[str, Any]]:
        return [m for m in self._drain() if m["value"] != 0]

    def _tags(self, **extra: str) -> dict[str, str]:
        return {"artifact_version": self.version, **extra}

    def _counter(self, key: str, value: float, **tags: str) -> dict[str, Any]:
        return {"type": "COUNTER", "key": key, "value": value, "tags": self._tags(**tags)}

    def _gauge(self, key: str, value: float, **tags: str) -> dict[str, Any]:
        return {"type": "GAUGE", "key": key, "value": value, "tags": self._tags(**tags)}
