"""A real seldon-core-microservice process on loopback, exercised over HTTP."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests
from modelserver import train
from modelserver.modelcard import MODEL_FILE_NAME, read_model_card

from .conftest import ServerProcess, metric_total

VERSION = "2.0.0"
ROW = [0.0] * 64
ADMIN_TOKEN = "test-admin-token-4f1c9a7e"


@pytest.fixture(scope="module")
def server(start_server: Callable[..., ServerProcess], model_dir: Callable[[str], Path]) -> ServerProcess:
    """2.0.0 with the fault admin API enabled (it needs a token then)."""
    return start_server(model_dir(VERSION), MODEL_ADMIN_ENABLED="1", MODEL_ADMIN_TOKEN=ADMIN_TOKEN)


@pytest.fixture(scope="module")
def local_model(model_dir: Callable[[str], Path]) -> Any:
    return joblib.load(model_dir(VERSION) / MODEL_FILE_NAME)


@pytest.fixture
def admin(server: ServerProcess) -> Iterator[ServerProcess]:
    """The default server, with its fault knobs reset after the test whatever happens."""
    yield server
    requests.delete(server.admin_url, headers=server.admin_headers(), timeout=5).raise_for_status()


def assert_serving(server: ServerProcess) -> None:
    assert server.process is not None and server.process.poll() is None, server.log_tail()
    response = server.predict([ROW])
    assert response.status_code == 200, response.text
    assert requests.get(f"{server.base_url}/health/status", timeout=5).status_code == 200


def timed_predict(server: ServerProcess, rows: list[list[float]]) -> tuple[int, float]:
    started = time.perf_counter()
    response = server.predict(rows)
    return response.status_code, time.perf_counter() - started


# --- serving ----------------------------------------------------------------------------------------


def test_health_reports_the_loaded_artifact(server: ServerProcess, model_dir: Callable[[str], Path]) -> None:
    card = read_model_card(model_dir(VERSION))
    body = requests.get(f"{server.base_url}/health/status", timeout=5).json()["jsonData"]
    assert body["status"] == "ready"
    assert body["version"] == VERSION
    assert body["artifact_sha256"] == card["artifact"]["sha256"]
    assert requests.get(f"{server.base_url}/health/ping", timeout=5).text.strip('"\n') == "pong"
    metadata = requests.get(f"{server.base_url}/api/v1.0/metadata", timeout=5).json()
    assert metadata["versions"] == [VERSION]


def test_predictions_match_the_model_loaded_in_process(
    server: ServerProcess, local_model: Any, dataset: train.Dataset
) -> None:
    served: list[int] = []
    for start in range(0, len(dataset.X_test), 150):
        response = server.predict(dataset.X_test[start : start + 150].tolist())
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["data"]["names"] == ["class"]
        assert body["meta"]["tags"]["model_version"] == VERSION
        assert body["meta"]["tags"]["served_model_version"] == VERSION
        assert "metrics" not in body["meta"]  # INCLUDE_METRICS_IN_CLIENT_RESPONSE=false
        served.extend(body["data"]["ndarray"])
    assert served == local_model.predict(dataset.X_test).tolist()


def test_probabilities_on_request(server: ServerProcess, local_model: Any, dataset: train.Dataset) -> None:
    rows = dataset.X_test[:40]
    response = server.predict(rows.tolist(), return_proba=True)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["names"] == [str(c) for c in local_model.classes_]
    served = np.asarray(data["ndarray"])
    np.testing.assert_allclose(served, local_model.predict_proba(rows), atol=1e-6)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, atol=1e-4)


def test_tensor_payload_is_accepted(server: ServerProcess, local_model: Any, dataset: train.Dataset) -> None:
    rows = dataset.X_test[:5]
    body = {"data": {"tensor": {"shape": list(rows.shape), "values": rows.ravel().tolist()}}}
    response = requests.post(server.predict_url, json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["ndarray"] == local_model.predict(rows).tolist()


def _row_with(index: int, value: Any) -> list[Any]:
    row: list[Any] = list(ROW)
    row[index] = value
    return row


# Each: (description, raw body or JSON-able body, words the 400's message must contain)
BAD_REQUESTS: list[tuple[str, Any, str]] = [
    ("not JSON at all", b"pixels please", "Can't find JSON"),
    ("body is a list", [ROW], "must be a JSON object"),
    ("no data field", {"meta": {}}, "no 'data' field"),
    ("unsupported strData", {"strData": "0,0,0"}, "'strData' is not supported"),
    ("data is not an object", {"data": [ROW]}, "'data' must be an object"),
    ("wrong feature count", {"data": {"ndarray": [ROW[:10]]}}, "has 10 features, expected 64"),
    ("ragged rows", {"data": {"ndarray": [ROW, ROW[:63]]}}, "row 1 has 63 features"),
    ("1-D array", {"data": {"ndarray": ROW}}, "1-D array of 64 values"),
    ("3-D array", {"data": {"ndarray": [[ROW]]}}, "3-D"),
    ("string value", {"data": {"ndarray": [_row_with(3, "7")]}}, "column 3 is a string"),
    ("null value", {"data": {"ndarray": [_row_with(4, None)]}}, "column 4 is null"),
    ("boolean value", {"data": {"ndarray": [_row_with(5, True)]}}, "column 5 is a boolean"),
    ("NaN", b'{"data": {"ndarray": [[NaN' + b", 0" * 63 + b"]]}}", "column 0 is NaN"),
    ("infinity", b'{"data": {"ndarray": [[0' + b", 0" * 62 + b", -Infinity]]}}", "column 63 is infinite"),
    ("pixel out of range", {"data": {"ndarray": [_row_with(6, -3)]}}, "must be within [0, 16]"),
    ("empty batch", {"data": {"ndarray": []}}, "is empty"),
    ("batch too large", {"data": {"ndarray": [ROW] * 1001}}, "1001 rows exceeds the limit of 1000"),
    ("tensor shape mismatch", {"data": {"tensor": {"shape": [2, 64], "values": ROW}}}, "needs 128 values"),
    ("tensor not 2-D", {"data": {"tensor": {"shape": [64], "values": ROW}}}, "must be 2-D"),
    (
        "return_proba not boolean",
        {"data": {"ndarray": [ROW]}, "meta": {"tags": {"return_proba": "yes"}}},
        "return_proba must be true or false",
    ),
]


@pytest.mark.parametrize(
    ("body", "words"), [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_input_gets_a_400_naming_the_problem(server: ServerProcess, body: Any, words: str) -> None:
    if isinstance(body, bytes):
        response = requests.post(
            server.predict_url, data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
    else:
        response = requests.post(server.predict_url, json=body, timeout=10)
    assert response.status_code == 400, response.text
    status = response.json()["status"]
    assert words in status["info"]
    assert status["reason"] == "MICROSERVICE_BAD_DATA"
    assert_serving(server)


def test_rejections_are_counted_by_reason(server: ServerProcess) -> None:
    before = server.scrape()
    for _ in range(3):
        assert server.predict([ROW[:5]]).status_code == 400
    # Counters of failed calls ride along with the next successful answer.
    assert server.predict([ROW]).status_code == 200
    after = server.scrape()
    labels = {"reason": "wrong_feature_count", "artifact_version": VERSION}
    assert (
        metric_total(after, "invalid_requests_total", **labels)
        - metric_total(before, "invalid_requests_total", **labels)
        == 3
    )


# --- metrics ----------------------------------------------------------------------------------------


def test_per_class_prediction_counters(
    server: ServerProcess, local_model: Any, dataset: train.Dataset
) -> None:
    rows = dataset.X_test[100:220]
    expected = {
        str(c): int(n) for c, n in zip(*np.unique(local_model.predict(rows), return_counts=True), strict=True)
    }
    before = server.scrape()
    for start in range(0, len(rows), 40):
        assert server.predict(rows[start : start + 40].tolist()).status_code == 200
    after = server.scrape()
    for cls in map(str, range(10)):
        labels = {"class": cls, "artifact_version": VERSION, "method": "predict"}
        delta = metric_total(after, "predictions_total", **labels) - metric_total(
            before, "predictions_total", **labels
        )
        assert delta == expected.get(cls, 0), cls
    inference = metric_total(after, "inference_seconds_count", artifact_version=VERSION) - metric_total(
        before, "inference_seconds_count", artifact_version=VERSION
    )
    assert inference == 3


# --- feedback ---------------------------------------------------------------------------------------


def test_feedback_against_truth_for_a_request(
    server: ServerProcess, local_model: Any, dataset: train.Dataset
) -> None:
    rows, truth = dataset.X_test[:60], dataset.y_test[:60]
    expected_correct = int(np.sum(local_model.predict(rows) == truth))
    before = server.scrape()
    feedback = {
        "request": {"data": {"ndarray": rows.tolist()}},
        "truth": {"data": {"ndarray": truth.tolist()}},
        "reward": 0.5,
    }
    response = requests.post(server.feedback_url, json=feedback, timeout=10)
    assert response.status_code == 200, response.text
    answer = response.json()["jsonData"]
    assert answer["accepted"] is True
    assert (answer["correct"], answer["incorrect"]) == (expected_correct, 60 - expected_correct)
    after = server.scrape()

    def delta(name: str, **labels: str) -> float:
        return metric_total(after, name, **labels) - metric_total(before, name, **labels)

    assert delta("feedback_total", artifact_version=VERSION) == 1
    assert delta("feedback_reward_total", artifact_version=VERSION) == pytest.approx(0.5)
    # No response in this feedback: this server answered the request itself, so the outcome is its own.
    assert answer["served_model_version"] == VERSION
    assert delta("feedback_outcomes_total", outcome="correct", served_model_version=VERSION) == expected_correct
    assert delta("feedback_outcomes_total", outcome="incorrect", served_model_version=VERSION) == 60 - expected_correct
    assert delta("seldon_api_model_feedback_reward_total") == pytest.approx(0.5)
    # By true class: each class's outcomes, adding up to the totals (a class's recall is its correct share).
    predicted = local_model.predict(rows)
    for true_class in sorted(set(truth.tolist())):
        rows_of_class = truth == true_class
        right = int(np.sum(predicted[rows_of_class] == true_class))
        assert delta("feedback_class_outcomes_total", outcome="correct", true_class=str(true_class),
                     served_model_version=VERSION) == right
        assert delta("feedback_class_outcomes_total", outcome="incorrect", true_class=str(true_class),
                     served_model_version=VERSION) == int(np.sum(rows_of_class)) - right


def test_feedback_scores_the_served_response(server: ServerProcess) -> None:
    feedback = {
        "response": {"data": {"names": ["class"], "ndarray": [1, 2, 3, 4]}},
        "truth": {"data": {"ndarray": [1, 2, 0, 0]}},
        "reward": 0,
    }
    response = requests.post(server.feedback_url, json=feedback, timeout=10)
    assert response.status_code == 200, response.text
    answer = response.json()["jsonData"]
    assert (answer["correct"], answer["incorrect"]) == (2, 2)


@pytest.mark.parametrize(
    ("feedback", "words"),
    [
        (
            {"truth": {"data": {"ndarray": [12]}}, "response": {"data": {"ndarray": [1]}}},
            "not a class in 0..9",
        ),
        (
            {"truth": {"data": {"ndarray": [1, 2]}}, "response": {"data": {"ndarray": [1]}}},
            "truth has 2 labels",
        ),
        ({"truth": {"data": {"ndarray": [1]}}}, "neither a request nor a response"),
        (
            {"truth": {"data": {"ndarray": [1]}}, "request": {"data": {"ndarray": [[1, 2]]}}},
            "feedback request",
        ),
        ({"rating": 5}, "Invalid JSON"),
    ],
)
def test_bad_feedback_gets_a_400(server: ServerProcess, feedback: dict, words: str) -> None:
    response = requests.post(server.feedback_url, json=feedback, timeout=10)
    assert response.status_code == 400, response.text
    assert words in response.json()["status"]["info"]
    assert_serving(server)


# --- fault knobs: admin API -------------------------------------------------------------------------


def test_admin_api_shows_and_validates(admin: ServerProcess) -> None:
    auth = admin.admin_headers()
    shown = requests.get(admin.admin_url, headers=auth, timeout=5).json()
    assert shown == {
        "latency_ms": 0.0,
        "latency_jitter_ms": 0.0,
        "latency_distribution": "normal",
        "error_rate": 0.0,
        "error_status": 503,
        "wrong_class_share": 0.0,
        "dead_class": None,
        "output_shift_class": None,
        "output_shift_share": 0.0,
        "output_shift_mode": "any",
    }
    for bad in ({"error_rate": 2}, {"latency": 5}, {"latency_distribution": "zipf"}):
        response = requests.put(admin.admin_url, json=bad, headers=auth, timeout=5)
        assert response.status_code == 400, bad
        assert "error" in response.json()
    response = requests.post(admin.admin_url, data=b"{nope", headers=auth, timeout=5)
    assert response.status_code == 400
    assert requests.get(admin.admin_url.replace("/faults", "/other"), headers=auth, timeout=5).status_code == 404
    assert requests.get(admin.admin_url, headers=auth, timeout=5).json() == shown


def test_admin_api_refuses_a_missing_or_wrong_token(admin: ServerProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {ADMIN_TOKEN}"},
                    {"Authorization": ADMIN_TOKEN}, {"Authorization": f"Bearer {ADMIN_TOKEN}x"}):
        for method in ("GET", "PUT", "DELETE"):
            body = {"error_rate": 1.0} if method == "PUT" else None
            response = requests.request(method, admin.admin_url, json=body, headers=headers, timeout=5)
            assert response.status_code == 401, (method, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Nothing changed, and unknown paths are not even revealed without the token.
    assert requests.get(admin.admin_url, headers=admin.admin_headers(), timeout=5).json()["error_rate"] == 0.0
    assert requests.get(admin.admin_url.replace("/faults", "/other"), timeout=5).status_code == 401


def raw_admin_request(
    server: ServerProcess, head: str, body: bytes = b"", timeout_s: float = 15.0
) -> tuple[int, float]:
    """Send `head` (request line and headers, CRLF-separated, no blank line) plus `body` on a raw socket,
    keep the socket open, and return the status code and how long the answer took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.admin_port), timeout=timeout_s) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n" + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status_line = answer.split(b"\r\n", 1)[0].decode()
    assert status_line.startswith("HTTP/"), answer[:200]
    return int(status_line.split()[1]), time.monotonic() - started


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ([], b"", 411),  # no Content-Length at all
        (["Transfer-Encoding: chunked"], b"2\r\n{}\r\n0\r\n\r\n", 411),
        (["Content-Length: abc"], b"{}", 400),
        (["Content-Length: -1"], b"{}", 400),
        (["Content-Length: +2"], b"{}", 400),
        (["Content-Length: 0x2"], b"{}", 400),
        (["Content-Length: 2", "Content-Length: 2"], b"{}", 400),
        (["Content-Length: 4097"], b"", 413),  # over the cap: refused before any of the body is read
        (["Content-Length: 99999999999999999999"], b"", 400),
        (["Content-Length: 2"], b"{}", 200),
        (["Content-Length: 0"], b"", 200),
    ],
    ids=["missing", "chunked", "non-numeric", "negative", "signed", "hex", "repeated", "too-large", "huge",
         "good", "empty"],
)
def test_admin_api_checks_content_length(admin: ServerProcess, headers: list[str], body: bytes, expected: int) -> None:
    head = "\r\n".join(["PUT /faults HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {ADMIN_TOKEN}",
                         "Content-Type: application/json", *headers])
    status, took = raw_admin_request(admin, head, body)
    assert status == expected
    assert took < 3.0  # answered at once: never waiting for a body it will not read
    assert requests.get(admin.admin_url, headers=admin.admin_headers(), timeout=5).status_code == 200


def test_admin_api_does_not_hang_on_a_body_shorter_than_announced(admin: ServerProcess) -> None:
    head = "\r\n".join(["PUT /faults HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {ADMIN_TOKEN}",
                         "Content-Length: 100"])
    status, took = raw_admin_request(admin, head, b'{"error_rate": 1')  # and then nothing, socket held open
    assert status == 408
    assert took < 10.0  # the handler's socket timeout (5 s), not forever
    shown = requests.get(admin.admin_url, headers=admin.admin_headers(), timeout=5).json()
    assert shown["error_rate"] == 0.0


def test_admin_latency_slows_predictions(admin: ServerProcess) -> None:
    auth = admin.admin_headers()
    baseline = statistics.median(timed_predict(admin, [ROW])[1] for _ in range(7))
    set_to = requests.put(admin.admin_url, json={"latency_ms": 200}, headers=auth, timeout=5)
    assert set_to.status_code == 200 and set_to.json()["latency_ms"] == 200.0
    slowed = [timed_predict(admin, [ROW]) for _ in range(5)]
    assert all(status == 200 for status, _ in slowed)
    assert statistics.median(t for _, t in slowed) >= baseline + 0.18
    requests.delete(admin.admin_url, headers=auth, timeout=5).raise_for_status()
    assert statistics.median(timed_predict(admin, [ROW])[1] for _ in range(5)) < baseline + 0.1


def test_admin_error_rate_fails_that_share_of_calls(admin: ServerProcess) -> None:
    auth = admin.admin_headers()
    before = admin.scrape()
    requests.put(
        admin.admin_url, json={"error_rate": 1.0, "error_status": 500}, headers=auth, timeout=5
    ).raise_for_status()
    always = [admin.predict([ROW]) for _ in range(10)]
    assert [r.status_code for r in always] == [500] * 10
    assert "injected fault" in always[0].json()["status"]["info"]
    assert requests.get(f"{admin.base_url}/health/status", timeout=5).status_code == 200

    n, rate = 300, 0.3
    requests.put(
        admin.admin_url, json={"error_rate": rate, "error_status": 503}, headers=auth, timeout=5
    ).raise_for_status()
    statuses = [admin.predict([ROW]).status_code for _ in range(n)]
    failures = statuses.count(503)
    assert set(statuses) <= {200, 503}
    # Binomial(300, 0.3): sd ~ 7.9; five of them either way.
    assert abs(failures - n * rate) < 5 * (n * rate * (1 - rate)) ** 0.5, failures

    # The gauges show the knobs, and the injected errors were counted (flushed by a good call).
    assert requests.get(f"{admin.base_url}/health/status", timeout=5).status_code == 200
    after = admin.scrape()
    gauge = [s.value for s in after if s.name == "fault_error_rate" and s.labels["method"] == "health"]
    assert gauge == [rate]
    injected = metric_total(after, "injected_errors_total") - metric_total(before, "injected_errors_total")
    assert injected == 10 + failures


# --- fault knobs from the environment, and each server's own admin token --------------------------------


@pytest.fixture(scope="module")
def faulty_server(
    start_server: Callable[..., ServerProcess], model_dir: Callable[[str], Path]
) -> ServerProcess:
    return start_server(
        model_dir(VERSION),
        MODEL_FAULT_LATENCY_MS="60",
        MODEL_FAULT_LATENCY_JITTER_MS="5",
        MODEL_FAULT_LATENCY_DISTRIBUTION="uniform",
        MODEL_FAULT_ERROR_RATE="0.25",
        MODEL_FAULT_ERROR_STATUS="503",
        MODEL_ADMIN_ENABLED="1",
        MODEL_ADMIN_TOKEN="chaos-token-7d2e5b90",
    )


def test_env_faults_apply_from_the_start(faulty_server: ServerProcess, server: ServerProcess) -> None:
    baseline = statistics.median(timed_predict(server, [ROW])[1] for _ in range(7))
    n, rate = 120, 0.25
    results = [timed_predict(faulty_server, [ROW]) for _ in range(n)]
    failures = sum(1 for status, _ in results if status == 503)
    assert all(status in (200, 503) for status, _ in results)
    assert abs(failures - n * rate) < 5 * (n * rate * (1 - rate)) ** 0.5, failures
    durations = [t for _, t in results]
    # Uniform 60 +- 5 ms on every call, failed or not.
    assert min(durations) >= 0.054
    assert statistics.median(durations) >= baseline + 0.05

    assert requests.get(f"{faulty_server.base_url}/health/status", timeout=5).status_code == 200
    samples = faulty_server.scrape()
    gauges = {
        s.name: s.value for s in samples if s.name.startswith("fault_") and s.labels["method"] == "health"
    }
    assert gauges == {
        "fault_latency_ms": 60.0,
        "fault_latency_jitter_ms": 5.0,
        "fault_error_rate": 0.25,
        # The quality knobs, all off (-1: no class).
        "fault_wrong_class_share": 0.0,
        "fault_dead_class": -1.0,
        "fault_output_shift_class": -1.0,
        "fault_output_shift_share": 0.0,
        "fault_output_shift_keep_accuracy": 0.0,
    }


def test_admin_token_of_this_server_only(faulty_server: ServerProcess) -> None:
    assert requests.get(faulty_server.admin_url, timeout=5).status_code == 401
    wrong = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # another server's token
    assert (
        requests.put(faulty_server.admin_url, json={"error_rate": 0}, headers=wrong, timeout=5).status_code
        == 401
    )
    good = faulty_server.admin_headers()
    shown = requests.get(faulty_server.admin_url, headers=good, timeout=5)
    assert shown.status_code == 200 and shown.json()["error_rate"] == 0.25
    changed = requests.put(faulty_server.admin_url, json={"error_rate": 0.0}, headers=good, timeout=5)
    assert changed.status_code == 200
    assert all(faulty_server.predict([ROW]).status_code == 200 for _ in range(10))
