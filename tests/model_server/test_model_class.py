"""The seldon user class in process: configuration, readiness and refusing a tampered artifact."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
import pytest
from modelserver import train
from modelserver.modelcard import MODEL_CARD_FILE_NAME, MODEL_FILE_NAME
from modelserver.server import DigitsClassifier
from modelserver.uri import ModelUriError
from seldon_core.flask_utils import SeldonMicroserviceException


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODEL_URI", "MODEL_VERSION", "MODEL_MAX_BATCH_SIZE"):
        monkeypatch.delenv(name, raising=False)


def test_not_ready_until_loaded(clean_env: None, model_dir: Callable[[str], Path]) -> None:
    model = DigitsClassifier(model_uri=model_dir("1.0.0").as_uri())
    assert not model.ready
    with pytest.raises(SeldonMicroserviceException) as caught:
        model.health_status()
    assert caught.value.status_code == 503
    with pytest.raises(SeldonMicroserviceException):
        model.predict_raw({"data": {"ndarray": [[0.0] * 64]}})
    model.load()
    assert model.ready
    assert model.health_status()["version"] == "1.0.0"


def test_in_process_answers_match_the_artifact(
    clean_env: None, model_dir: Callable[[str], Path], dataset: train.Dataset
) -> None:
    model = DigitsClassifier(model_uri=str(model_dir("2.0.0")))
    model.load()
    reference = joblib.load(model_dir("2.0.0") / MODEL_FILE_NAME)
    rows = dataset.X_test[:25]
    answer = model.predict_raw({"data": {"ndarray": rows.tolist()}})
    assert answer["data"]["ndarray"] == reference.predict(rows).tolist()
    np.testing.assert_array_equal(model.predict(rows), reference.predict(rows))
    np.testing.assert_allclose(model.predict_proba(rows), reference.predict_proba(rows))
    # The answer carries this call's per-class counters for seldon-core to record.
    counted = sum(m["value"] for m in answer["meta"]["metrics"] if m["key"] == "predictions_total")
    assert counted == 25


def test_settings_from_environment(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, model_dir: Callable[[str], Path]
) -> None:
    monkeypatch.setenv("MODEL_URI", model_dir("2.2.0-biased").as_uri())
    monkeypatch.setenv("MODEL_VERSION", "2.2.0-biased-canary")
    monkeypatch.setenv("MODEL_MAX_BATCH_SIZE", "3")
    model = DigitsClassifier()
    model.load()
    assert model.version == "2.2.0-biased-canary" and model.max_batch_size == 3
    with pytest.raises(SeldonMicroserviceException) as caught:
        model.predict_raw({"data": {"ndarray": [[0.0] * 64] * 4}})
    assert caught.value.status_code == 400 and "limit of 3" in caught.value.message
    # An explicit parameter (seldon's `parameters`) wins over the environment.
    monkeypatch.delenv("MODEL_VERSION")
    explicit = DigitsClassifier(model_uri=str(model_dir("1.0.0")), max_batch_size=5)
    assert (explicit.version, explicit.max_batch_size) == ("1.0.0", 5)


def test_missing_or_unsupported_uri_fails_at_start(clean_env: None) -> None:
    with pytest.raises(ValueError, match="MODEL_URI"):
        DigitsClassifier()
    with pytest.raises(ModelUriError, match="not supported"):
        DigitsClassifier(model_uri="gs://bucket/digits/2.0.0")


def test_tampered_artifact_is_refused_at_load(
    clean_env: None, tmp_path: Path, model_dir: Callable[[str], Path]
) -> None:
    copy = tmp_path / "2.0.0"
    shutil.copytree(model_dir("2.0.0"), copy)
    (copy / MODEL_FILE_NAME).write_bytes((copy / MODEL_FILE_NAME).read_bytes() + b"\0")
    model = DigitsClassifier(model_uri=str(copy))
    with pytest.raises(RuntimeError, match="model card says"):
        model.load()
    assert not model.ready


def test_artifact_without_card_serves_under_its_directory_name(
    clean_env: None, tmp_path: Path, model_dir: Callable[[str], Path]
) -> None:
    copy = tmp_path / "3.0.0-rc1"
    shutil.copytree(model_dir("2.0.0"), copy)
    (copy / MODEL_CARD_FILE_NAME).unlink()
    model = DigitsClassifier(model_uri=str(copy / MODEL_FILE_NAME))
    model.load()
    assert model.version == "3.0.0-rc1"
    assert model.health_status()["artifact_sha256"] is not None
