"""Model quality keyed on the version that answered, over real seldon-core-microservice processes.

On Seldon Core v1, feedback is routed by the same traffic weights as predictions, so most of a 10%
canary's feedback reaches the stable model's servers. Every answer therefore names the version that
produced it (meta.tags.served_model_version), and whichever server receives the feedback counts the
outcome under that version: feedback_outcomes_total{served_model_version, outcome}.

Also here: the fault admin API is off by default, and enabled without a token the server refuses to start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests
from modelserver import train
from modelserver.modelcard import MODEL_FILE_NAME
from modelserver.server import SERVED_VERSION_TAG, served_version
from seldon_core.metrics import SeldonMetrics

from .conftest import ServerProcess, metric_total

STABLE, CANDIDATE = "1.0.0", "2.0.0"
# Seldon's operator sets the container image here; seldon-core turns its tag into the metric label
# model_version (and image_version), over any tag of that name a model sends.
IMAGE = "registry.example/digits-server:0.1.0"
OUTCOMES = "feedback_outcomes_total"


@pytest.fixture(scope="module")
def stable(start_server: Callable[..., ServerProcess], model_dir: Callable[[str], Path]) -> ServerProcess:
    """1.0.0 as Seldon runs it (image env set); no admin settings at all: the defaults."""
    return start_server(model_dir(STABLE), PREDICTIVE_UNIT_IMAGE=IMAGE)


@pytest.fixture(scope="module")
def candidate(start_server: Callable[..., ServerProcess], model_dir: Callable[[str], Path]) -> ServerProcess:
    return start_server(model_dir(CANDIDATE), PREDICTIVE_UNIT_IMAGE=IMAGE)


def predict(server: ServerProcess, rows: np.ndarray) -> dict[str, Any]:
    response = server.predict(rows.tolist())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def send_feedback(server: ServerProcess, feedback: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(server.feedback_url, json=feedback, timeout=10)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["jsonData"]
    return answer


class Outcomes:
    """feedback_outcomes_total deltas on one server, by served_model_version and outcome."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.before = server.scrape()

    def delta(self, version: str, outcome: str) -> float:
        after = self.server.scrape()
        labels = {SERVED_VERSION_TAG: version, "outcome": outcome}
        return metric_total(after, OUTCOMES, **labels) - metric_total(self.before, OUTCOMES, **labels)


def test_every_answer_names_the_version_that_produced_it(
    stable: ServerProcess, candidate: ServerProcess, dataset: train.Dataset
) -> None:
    rows = dataset.X_test[:3]
    for server, version in ((stable, STABLE), (candidate, CANDIDATE)):
        plain = predict(server, rows)
        proba = server.predict(rows.tolist(), return_proba=True).json()
        for body in (plain, proba):
            assert body["meta"]["tags"][SERVED_VERSION_TAG] == version, body["meta"]
    # A tag the client put in its request does not leak into the answer's version.
    spoofed = requests.post(candidate.predict_url, timeout=10, json={
        "data": {"ndarray": rows.tolist()}, "meta": {"tags": {SERVED_VERSION_TAG: "9.9.9"}}}).json()
    assert spoofed["meta"]["tags"][SERVED_VERSION_TAG] == CANDIDATE


def test_feedback_counts_under_the_version_that_answered_whichever_server_gets_it(
    stable: ServerProcess, candidate: ServerProcess, model_dir: Callable[[str], Path], dataset: train.Dataset
) -> None:
    rows, truth = dataset.X_test[:120], dataset.y_test[:120]
    reference = {v: joblib.load(model_dir(v) / MODEL_FILE_NAME).predict(rows) for v in (STABLE, CANDIDATE)}
    right = {v: int(np.sum(reference[v] == truth)) for v in (STABLE, CANDIDATE)}
    assert right[STABLE] != right[CANDIDATE]  # the two models disagree: a mix-up would show

    on_stable, on_candidate = Outcomes(stable), Outcomes(candidate)
    # As Seldon routes it at a canary weight: the candidate's answer judged on a stable server, and the
    # other way round. The whole answer travels back, meta.tags included, as a client sends it.
    candidate_answer = predict(candidate, rows)
    stable_answer = predict(stable, rows)
    truth_msg = {"data": {"ndarray": truth.tolist()}}
    got = send_feedback(stable, {"request": {"data": {"ndarray": rows.tolist()}}, "response": candidate_answer,
                                 "truth": truth_msg, "reward": 1})
    assert (got["correct"], got[SERVED_VERSION_TAG]) == (right[CANDIDATE], CANDIDATE)
    got = send_feedback(candidate, {"response": stable_answer, "truth": truth_msg})
    assert (got["correct"], got[SERVED_VERSION_TAG]) == (right[STABLE], STABLE)

    assert on_stable.delta(CANDIDATE, "correct") == right[CANDIDATE]
    assert on_stable.delta(CANDIDATE, "incorrect") == 120 - right[CANDIDATE]
    assert on_stable.delta(STABLE, "correct") + on_stable.delta(STABLE, "incorrect") == 0  # not the receiver's
    assert on_candidate.delta(STABLE, "correct") == right[STABLE]
    assert on_candidate.delta(STABLE, "incorrect") == 120 - right[STABLE]
    assert on_candidate.delta(CANDIDATE, "correct") + on_candidate.delta(CANDIDATE, "incorrect") == 0


def test_the_version_label_survives_seldon_and_model_version_does_not(
    stable: ServerProcess, candidate: ServerProcess, dataset: train.Dataset
) -> None:
    """Over HTTP, with the image env Seldon sets: seldon-core labels every custom metric with
    model_version = the image tag (seldon_core/metrics.py DEFAULT_LABELS, merged over the model's own
    tags in SeldonMetrics._merge_labels); served_model_version is not among its labels and comes through."""
    answer = predict(candidate, dataset.X_test[:10])
    send_feedback(stable, {"response": answer, "truth": {"data": {"ndarray": dataset.y_test[:10].tolist()}}})
    samples = [s for s in stable.scrape() if s.name == OUTCOMES and s.labels.get(SERVED_VERSION_TAG) == CANDIDATE]
    assert samples
    for sample in samples:
        assert sample.labels["model_version"] == "0.1.0"  # seldon's, from the image tag
        assert sample.labels["artifact_version"] == STABLE  # the server that received the feedback
        assert sample.labels["method"] == "feedback"


def test_seldon_overwrites_a_model_version_tag_on_metrics_in_process() -> None:
    """The same rule without processes: a custom metric tag called model_version loses to seldon's label."""
    metrics = SeldonMetrics()
    try:
        metrics.update([{"type": "COUNTER", "key": "probe_total", "value": 1,
                         "tags": {"model_version": "2.0.0", SERVED_VERSION_TAG: "2.0.0"}}], "feedback")
        names, values = metrics._merge_labels(0, {"model_version": "2.0.0", SERVED_VERSION_TAG: "2.0.0"})
    finally:
        del metrics
    labels = dict(zip(names, values, strict=True))
    assert labels[SERVED_VERSION_TAG] == "2.0.0"
    assert labels["model_version"] != "2.0.0"  # seldon's (image tag, or NOT_IMPLEMENTED without one)


@pytest.mark.parametrize(
    ("response_meta", "why"),
    [
        (None, "no meta at all"),
        ({"tags": {}}, "no version tag"),
        ({"tags": {"model_version": CANDIDATE}}, "only seldon's model_version tag"),
        ({"tags": {SERVED_VERSION_TAG: '2.0.0"} or vector(1) #'}}, "not a version name"),
        ({"tags": {SERVED_VERSION_TAG: "v" * 64}}, "too long"),
        ({"tags": {SERVED_VERSION_TAG: 2.0}}, "not a string"),
    ],
)
def test_feedback_without_a_usable_version_counts_as_unknown_never_as_the_receiver(
    stable: ServerProcess, response_meta: dict[str, Any] | None, why: str
) -> None:
    outcomes = Outcomes(stable)
    response: dict[str, Any] = {"data": {"names": ["class"], "ndarray": [1, 2, 3, 4]}}
    if response_meta is not None:
        response["meta"] = response_meta
    got = send_feedback(stable, {"response": response, "truth": {"data": {"ndarray": [1, 2, 0, 0]}}})
    assert (got["correct"], got["incorrect"], got[SERVED_VERSION_TAG]) == (2, 2, "unknown"), why
    assert outcomes.delta("unknown", "correct") == 2
    assert outcomes.delta("unknown", "incorrect") == 2
    assert outcomes.delta(STABLE, "correct") + outcomes.delta(STABLE, "incorrect") == 0


def test_served_version_reads_only_plain_version_names() -> None:
    assert served_version({"meta": {"tags": {SERVED_VERSION_TAG: "2.1.0-degraded"}}}) == "2.1.0-degraded"
    assert served_version({"meta": {"tags": {SERVED_VERSION_TAG: "1.0"}}}) == "1.0"
    for bad in ({}, {"meta": []}, {"meta": {"tags": None}}, {"meta": {"tags": {SERVED_VERSION_TAG: ""}}},
                {"meta": {"tags": {SERVED_VERSION_TAG: "-2.0"}}}, {"meta": {"tags": {SERVED_VERSION_TAG: "a b"}}},
                {"meta": {"tags": {SERVED_VERSION_TAG: "2.0.0\n"}}}, None, "2.0.0"):
        assert served_version(bad) == "unknown", bad


# --- the fault admin API: off by default; enabled, a token or no start ---------------------------------


def test_admin_api_is_off_by_default(stable: ServerProcess) -> None:
    assert not stable.admin_enabled
    with pytest.raises(requests.ConnectionError):
        requests.get(stable.admin_url, timeout=5)
    # Serving is unaffected.
    assert stable.predict([[0.0] * 64]).status_code == 200


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MODEL_ADMIN_ENABLED": "1"}, "without a bearer token"),
        ({"MODEL_ADMIN_ENABLED": "1", "MODEL_ADMIN_TOKEN": "short"}, "at least 16 characters"),
    ],
    ids=["no-token", "short-token"],
)
def test_admin_api_enabled_without_a_usable_token_refuses_to_start(
    start_server: Callable[..., ServerProcess], model_dir: Callable[[str], Path], env: dict[str, str], words: str
) -> None:
    server = start_server(model_dir(STABLE), wait_ready=False, **env)
    status = server.wait_exit()
    assert status != 0
    log = server.log_path.read_text(errors="replace")
    assert "MODEL_ADMIN_TOKEN" in log and words in log, server.log_tail()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.base_url}/health/status", timeout=2)
