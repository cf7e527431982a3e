"""Training is reproducible, documented by its model card, and the variants differ as intended."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from modelserver import modelcard, train
from sklearn.datasets import load_digits

VERSIONS = ("1.0.0", "2.0.0", "2.1.0-degraded", "2.2.0-biased")


def card_of(models_root: Path, version: str) -> dict:
    return modelcard.read_model_card(models_root / train.MODEL_NAME / version)


def test_all_documented_versions_are_trained(models_root: Path) -> None:
    for version in VERSIONS:
        version_dir = models_root / train.MODEL_NAME / version
        assert (version_dir / modelcard.MODEL_FILE_NAME).is_file()
        assert card_of(models_root, version)["version"] == version
    assert set(train.VARIANTS) == set(VERSIONS)


def test_same_seed_in_a_fresh_interpreter_gives_identical_artifacts(
    models_root: Path, tmp_path: Path
) -> None:
    # Another process with another hash seed: nothing process-specific may leak into the pickles.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelserver.train",
            "--out",
            str(tmp_path),
            "--seed",
            str(train.DEFAULT_SEED),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=120,
    )
    for version in VERSIONS:
        first, second = card_of(models_root, version), card_of(tmp_path, version)
        first_sha = modelcard.sha256_file(
            models_root / train.MODEL_NAME / version / modelcard.MODEL_FILE_NAME
        )
        second_sha = modelcard.sha256_file(tmp_path / train.MODEL_NAME / version / modelcard.MODEL_FILE_NAME)
        assert first_sha == second_sha == first["artifact"]["sha256"] == second["artifact"]["sha256"], version
        assert first["metrics"] == second["metrics"], version
        assert first["data"]["sha256"] == second["data"]["sha256"]


def test_another_seed_gives_another_split_and_artifact(models_root: Path, tmp_path: Path) -> None:
    other = train.train(tmp_path, versions=["2.0.0"], seed=train.DEFAULT_SEED + 1)[0]
    assert other.artifact_sha256 != card_of(models_root, "2.0.0")["artifact"]["sha256"]


def test_retraining_into_the_same_place_leaves_identical_artifacts_alone(tmp_path: Path) -> None:
    first = train.train(tmp_path, versions=["1.0.0"])[0]
    card_path = first.version_dir / modelcard.MODEL_CARD_FILE_NAME
    card_before = card_path.read_text()
    second = train.train(tmp_path, versions=["1.0.0"])[0]
    assert first.written and not second.written
    assert second.artifact_sha256 == first.artifact_sha256
    assert card_path.read_text() == card_before  # creation time kept: nothing was rewritten


def test_tampered_artifact_is_rewritten_on_the_next_run(tmp_path: Path) -> None:
    result = train.train(tmp_path, versions=["1.0.0"])[0]
    artifact = result.version_dir / modelcard.MODEL_FILE_NAME
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    with pytest.raises(modelcard.ModelCardError, match="sha256"):
        modelcard.verify_artifact(result.version_dir)
    again = train.train(tmp_path, versions=["1.0.0"])[0]
    assert again.written
    assert modelcard.verify_artifact(result.version_dir) == result.artifact_sha256


def test_model_card_round_trip_and_consistency(models_root: Path) -> None:
    X, y = load_digits(return_X_y=True)
    for version in VERSIONS:
        version_dir = models_root / train.MODEL_NAME / version
        card = modelcard.read_model_card(version_dir)
        for name in modelcard.REQUIRED_FIELDS:
            assert name in card, name
        assert modelcard.verify_artifact(version_dir, card) == card["artifact"]["sha256"]
        assert card["artifact"]["bytes"] == (version_dir / card["artifact"]["file"]).stat().st_size
        assert card["data"]["sha256"] == train.dataset_sha256(X, y)
        assert card["data"]["n_samples"] == 1797 and card["data"]["n_features"] == 64
        assert set(card["metrics"]["per_class_recall"]) == {str(c) for c in range(10)}
        assert card["libraries"]["scikit-learn"] and card["libraries"]["numpy"]
        assert card["seed"] == train.DEFAULT_SEED
        assert card["source_commit"] == "unknown" or len(card["source_commit"]) == 40
        assert card["training"]["pipeline"]["classify"]["estimator"] == "LogisticRegression"
        # Written and read back: the same document.
        written = modelcard.write_model_card(version_dir.parent / "roundtrip", card)
        assert json.loads(written.read_text()) == card
        written.unlink()
        written.parent.rmdir()


def test_model_card_rejects_missing_fields(tmp_path: Path) -> None:
    with pytest.raises(modelcard.ModelCardError, match="lacks fields"):
        modelcard.write_model_card(tmp_path, {"model": "digits"})
    (tmp_path / modelcard.MODEL_CARD_FILE_NAME).write_text('{"model": "digits"}')
    with pytest.raises(modelcard.ModelCardError, match="lacks fields"):
        modelcard.read_model_card(tmp_path)
    (tmp_path / modelcard.MODEL_CARD_FILE_NAME).write_text("{not json")
    with pytest.raises(modelcard.ModelCardError, match="not valid JSON"):
        modelcard.read_model_card(tmp_path)


def held_out_metrics(models_root: Path, version: str, dataset: train.Dataset) -> dict:
    model = joblib.load(models_root / train.MODEL_NAME / version / modelcard.MODEL_FILE_NAME)
    return train.evaluate(model, dataset.X_test, dataset.y_test)


def test_card_metrics_are_the_artifacts_held_out_metrics(models_root: Path, dataset: train.Dataset) -> None:
    for version in VERSIONS:
        assert held_out_metrics(models_root, version, dataset) == card_of(models_root, version)["metrics"]


def test_variants_rank_as_designed_on_the_held_out_set(models_root: Path, dataset: train.Dataset) -> None:
    metrics = {v: held_out_metrics(models_root, v, dataset) for v in VERSIONS}
    target = str(train.BIASED_TARGET_CLASS)
    baseline, good = metrics["1.0.0"], metrics["2.0.0"]
    degraded, biased = metrics["2.1.0-degraded"], metrics["2.2.0-biased"]

    assert 0.82 <= baseline["accuracy"] <= 0.92
    assert good["accuracy"] >= 0.95
    assert good["accuracy"] >= baseline["accuracy"] + 0.05
    assert degraded["accuracy"] <= good["accuracy"] - 0.10
    # The biased model looks fine overall, yet is blind to its target class.
    assert biased["accuracy"] >= 0.80
    assert biased["per_class_recall"][target] <= 0.05
    assert good["per_class_recall"][target] >= 0.85
    others = [c for c in map(str, range(10)) if c != target]
    assert min(biased["per_class_recall"][c] for c in others) >= 0.8


def test_dataset_hash_covers_features_and_labels() -> None:
    X, y = load_digits(return_X_y=True)
    flipped = y.copy()
    flipped[0] = (flipped[0] + 1) % 10
    assert train.dataset_sha256(X, y) != train.dataset_sha256(X, flipped)
    assert train.dataset_sha256(X, y) == train.dataset_sha256(X.astype(np.float64), y.astype(np.int64))


def test_unknown_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown versions"):
        train.train(tmp_path, versions=["9.9.9"])
