"""Request parsing and validation: every malformed input becomes an InvalidInput naming the problem.

The server parses Seldon JSON payloads itself (instead of letting seldon-core turn them into numpy
arrays first) because seldon-core answers some malformed payloads, such as ragged rows or a tensor
whose shape disagrees with its values, with HTTP 500.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SUPPORTED_PAYLOADS = ("data.ndarray", "data.tensor")


class InvalidInput(ValueError):
    """A client error; `reason` is a short stable code (used as a metric label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but true/false are not pixel values.
    return type(value) is float or type(value) is int


def extract_rows(request: Any) -> tuple[Any, str]:
    """Return the raw 2-D candidate (list of rows) from a Seldon message and where it came from."""
    if not isinstance(request, dict):
        raise InvalidInput(
            "not_an_object",
            f"request body must be a JSON object with a 'data' field, got {_describe(request)}",
        )
    if "data" not in request:
        others = [key for key in ("strData", "binData", "jsonData") if key in request]
        if others:
            raise InvalidInput(
                "unsupported_payload",
                f"payload '{others[0]}' is not supported; send {' or '.join(SUPPORTED_PAYLOADS)}",
            )
        raise InvalidInput("missing_data", "request has no 'data' field; send {'data': {'ndarray': [[...]]}}")
    data = request["data"]
    if not isinstance(data, dict):
        raise InvalidInput("bad_data", f"'data' must be an object, got {_describe(data)}")
    if "ndarray" in data:
        return data["ndarray"], "data.ndarray"
    if "tensor" in data:
        return _tensor_rows(data["tensor"]), "data.tensor"
    if "tftensor" in data:
        raise InvalidInput(
            "unsupported_payload", "data.tftensor is not supported; send data.ndarray or data.tensor"
        )
    raise InvalidInput("missing_data", "'data' has neither 'ndarray' nor 'tensor'")


def _tensor_rows(tensor: Any) -> list[list[Any]]:
    if not isinstance(tensor, dict):
        raise InvalidInput("bad_tensor", f"data.tensor must be an object, got {_describe(tensor)}")
    shape, values = tensor.get("shape"), tensor.get("values")
    if not isinstance(shape, list) or not all(_is_number(d) and d == int(d) and d >= 0 for d in shape):
        raise InvalidInput("bad_tensor", "data.tensor.shape must be a list of non-negative integers")
    if not isinstance(values, list):
        raise InvalidInput("bad_tensor", "data.tensor.values must be a list of numbers")
    dims = [int(d) for d in shape]
    if len(dims) != 2:
        raise InvalidInput(
            "wrong_rank", f"data.tensor.shape must be 2-D [rows, features], got {len(dims)}-D {dims}"
        )
    n_rows, n_cols = dims
    if n_rows * n_cols != len(values):
        raise InvalidInput(
            "bad_tensor",
            f"data.tensor.shape {dims} needs {n_rows * n_cols} values, got {len(values)}",
        )
    return [values[i * n_cols : (i + 1) * n_cols] for i in range(n_rows)]


def validate_features(
    rows: Any, where: str, n_features: int, max_batch: int, value_range: tuple[float, float]
) -> np.ndarray:
    """Check a list of rows and return it as a float64 matrix of shape (n, n_features)."""
    if not isinstance(rows, list):
        raise InvalidInput(
            "wrong_rank", f"{where} must be a 2-D array (a list of rows), got {_describe(rows)}"
        )
    if not rows:
        raise InvalidInput("empty_batch", f"{where} is empty; send at least one row of {n_features} features")
    if len(rows) > max_batch:
        raise InvalidInput(
            "batch_too_large", f"batch of {len(rows)} rows exceeds the limit of {max_batch} rows per request"
        )
    if all(_is_number(v) for v in rows):
        raise InvalidInput(
            "wrong_rank",
            f"{where} must be 2-D (rows of {n_features} features), got a 1-D array of {len(rows)} "
            f"values; wrap a single sample as [[...]]",
        )
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise InvalidInput(
                "wrong_rank", f"{where} row {i} must be a list of numbers, got {_describe(row)}"
            )
        if not all(_is_number(v) for v in row):
            j, bad = next((j, v) for j, v in enumerate(row) if not _is_number(v))
            if isinstance(bad, list):
                raise InvalidInput(
                    "wrong_rank",
                    f"{where} must be 2-D: row {i} column {j} is itself a list (3-D input?)",
                )
            raise InvalidInput(
                "wrong_type", f"{where} values must be numbers: row {i} column {j} is {_describe(bad)}"
            )
        if len(row) != n_features:
            raise InvalidInput(
                "wrong_feature_count", f"{where} row {i} has {len(row)} features, expected {n_features}"
            )
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except OverflowError as exc:
        raise InvalidInput("out_of_range", f"{where} holds an integer too large for a float64") from exc
    finite = np.isfinite(matrix)
    if not finite.all():
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        kind = "NaN" if math.isnan(matrix[i, j]) else "infinite"
        raise InvalidInput(
            "non_finite", f"{where} row {i} column {j} is {kind}; values must be finite numbers"
        )
    low, high = value_range
    outside = (matrix < low) | (matrix > high)
    if outside.any():
        i, j = (int(k) for k in np.argwhere(outside)[0])
        raise InvalidInput(
            "out_of_range",
            f"{where} row {i} column {j} is {matrix[i, j]:g}; "
            f"pixel values must be within [{low:g}, {high:g}]",
        )
    return matrix


def parse_features(
    request: Any, n_features: int, max_batch: int, value_range: tuple[float, float]
) -> np.ndarray:
    rows, where = extract_rows(request)
    return validate_features(rows, where, n_features, max_batch, value_range)


def parse_labels(message: Any, what: str, n_classes: int) -> np.ndarray:
    """Class labels from a Seldon message: 1-D labels, a one-column 2-D array, or per-class probabilities."""
    rows, where = extract_rows(message)
    where = f"{what}.{where}"
    if not isinstance(rows, list) or not rows:
        raise InvalidInput("bad_labels", f"{where} must be a non-empty list of class labels")
    if all(isinstance(r, list) for r in rows):
        widths = {len(r) for r in rows}
        if widths == {1}:
            rows = [r[0] for r in rows]
        elif widths == {n_classes} and all(_is_number(v) for r in rows for v in r):
            return np.asarray(rows, dtype=np.float64).argmax(axis=1)
        else:
            raise InvalidInput(
                "bad_labels",
                f"{where} must hold one label per row or {n_classes} class probabilities per row",
            )
    labels = []
    for i, value in enumerate(rows):
        # Labels that went through protobuf come back as floats (3.0).
        if not _is_number(value) or not math.isfinite(value) or value != int(value):
            raise InvalidInput(
                "bad_labels", f"{where} item {i} is {_describe(value)}, expected a class label"
            )
        if not 0 <= int(value) < n_classes:
            raise InvalidInput(
                "bad_labels", f"{where} item {i} is {int(value)}, not a class in 0..{n_classes - 1}"
            )
        labels.append(int(value))
    return np.asarray(labels, dtype=np.int64)
