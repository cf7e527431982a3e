"""Input parsing and model URI resolution, in process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modelserver.modelcard import MODEL_FILE_NAME
from modelserver.uri import ModelUriError, resolve_model_uri
from modelserver.validation import InvalidInput, parse_features, parse_labels

ROW = [0.0] * 64


def parse(request: object, max_batch: int = 1000) -> np.ndarray:
    return parse_features(request, 64, max_batch, (0.0, 16.0))


def test_ndarray_and_tensor_payloads_give_the_same_matrix() -> None:
    rows = [[float((i + j) % 17) for j in range(64)] for i in range(3)]
    from_ndarray = parse({"data": {"ndarray": rows}})
    from_tensor = parse({"data": {"tensor": {"shape": [3, 64], "values": [v for r in rows for v in r]}}})
    assert from_ndarray.shape == (3, 64) and from_ndarray.dtype == np.float64
    np.testing.assert_array_equal(from_ndarray, from_tensor)


@pytest.mark.parametrize(
    ("request_body", "reason", "words"),
    [
        ([ROW], "not_an_object", "JSON object"),
        ({}, "missing_data", "no 'data'"),
        ({"strData": "hello"}, "unsupported_payload", "strData"),
        ({"data": [ROW]}, "bad_data", "must be an object"),
        ({"data": {"names": []}}, "missing_data", "neither"),
        ({"data": {"ndarray": "pixels"}}, "wrong_rank", "2-D"),
        ({"data": {"ndarray": ROW}}, "wrong_rank", "1-D"),
        ({"data": {"ndarray": [[ROW]]}}, "wrong_rank", "3-D"),
        ({"data": {"ndarray": []}}, "empty_batch", "empty"),
        ({"data": {"ndarray": [ROW, ROW[:-1]]}}, "wrong_feature_count", "row 1 has 63 features"),
        ({"data": {"ndarray": [[*ROW[:5], "x", *ROW[6:]]]}}, "wrong_type", "column 5 is a string"),
        ({"data": {"ndarray": [[None, *ROW[1:]]]}}, "wrong_type", "null"),
        ({"data": {"ndarray": [[True, *ROW[1:]]]}}, "wrong_type", "boolean"),
        ({"data": {"ndarray": [[float("nan"), *ROW[1:]]]}}, "non_finite", "NaN"),
        ({"data": {"ndarray": [[*ROW[1:], float("-inf")]]}}, "non_finite", "infinite"),
        ({"data": {"ndarray": [[17.0, *ROW[1:]]]}}, "out_of_range", "within [0, 16]"),
        ({"data": {"ndarray": [[10**400, *ROW[1:]]]}}, "out_of_range", "too large"),
        ({"data": {"tensor": {"shape": [2, 64], "values": ROW}}}, "bad_tensor", "needs 128 values"),
        ({"data": {"tensor": {"shape": [64], "values": ROW}}}, "wrong_rank", "2-D"),
        ({"data": {"tensor": {"values": ROW}}}, "bad_tensor", "shape"),
    ],
)
def test_each_malformed_request_is_named(request_body: object, reason: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(request_body)
    assert caught.value.reason == reason
    assert words in caught.value.message


def test_batch_limit_is_configurable() -> None:
    assert parse({"data": {"ndarray": [ROW] * 5}}, max_batch=5).shape == (5, 64)
    with pytest.raises(InvalidInput, match="batch of 6 rows exceeds the limit of 5"):
        parse({"data": {"ndarray": [ROW] * 6}}, max_batch=5)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"data": {"ndarray": [3, 1.0, 0]}}, [3, 1, 0]),
        ({"data": {"ndarray": [[3], [1]]}}, [3, 1]),
        ({"data": {"ndarray": [[0.1] * 3 + [0.7] + [0.0] * 6]}}, [3]),
    ],
)
def test_labels_from_feedback_messages(message: dict, expected: list[int]) -> None:
    assert parse_labels(message, "truth", 10).tolist() == expected


@pytest.mark.parametrize("bad", [[12], [1.5], ["3"], [[1, 2]], []])
def test_bad_labels_are_refused(bad: list) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_labels({"data": {"ndarray": bad}}, "truth", 10)
    assert caught.value.reason == "bad_labels"


def test_model_uri_forms(tmp_path: Path) -> None:
    version_dir = tmp_path / "digits" / "2.0.0"
    version_dir.mkdir(parents=True)
    (version_dir / MODEL_FILE_NAME).write_bytes(b"artifact")
    for uri in (
        version_dir.as_uri(),
        f"file://localhost{version_dir}",
        (version_dir / MODEL_FILE_NAME).as_uri(),
        str(version_dir),
        f"  {version_dir}/  ",
    ):
        location = resolve_model_uri(uri)
        assert location.version_dir == version_dir
        assert location.artifact_path == version_dir / MODEL_FILE_NAME


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("", "empty"),
        ("s3://bucket/digits/2.0.0", "scheme 's3' is not supported"),
        ("file://otherhost/models", "must be local"),
        ("/nonexistent/digits/2.0.0", "no model artifact"),
    ],
)
def test_bad_model_uris(uri: str, words: str) -> None:
    with pytest.raises(ModelUriError, match=words):
        resolve_model_uri(uri)
