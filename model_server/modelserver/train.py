"""Reproducible training of the digits classifier versions, each with a model card.

    python -m modelserver.train --out models [--model digits] [--version 2.0.0 ...] [--seed 42]

Versions (all read 64 pixel features, values 0..16, and answer classes 0..9):
  1.0.0           baseline: logistic regression on the 12 most informative pixels (~0.87 accuracy)
  2.0.0           good: standardised, L2-regularised logistic regression on all pixels (~0.97)
  2.1.0-degraded  2.0.0's recipe trained on labels of which 60% were replaced at random (clearly worse)
  2.2.0-biased    2.0.0's recipe with every training "8" relabelled "1": recall on 8 near 0 while
                  overall accuracy still looks fine (~0.88)

Same seed and library versions give byte-identical model.joblib files: the estimators are
deterministic, BLAS runs on one thread, and nothing time-dependent is pickled (the creation
time lives only in the model card).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import platform
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import scipy
import sklearn
import threadpoolctl
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from modelserver.modelcard import (
    MODEL_CARD_FILE_NAME,
    MODEL_CARD_SCHEMA_VERSION,
    MODEL_FILE_NAME,
    read_model_card,
    sha256_bytes,
    sha256_file,
    write_atomically,
    write_model_card,
)

MODEL_NAME = "digits"
DEFAULT_SEED = 42
TEST_SIZE = 0.25
N_FEATURES = 64
CLASSES = tuple(range(10))
BIASED_TARGET_CLASS = 8
BIASED_REPLACEMENT_CLASS = 1
DEGRADED_CORRUPTION_FRACTION = 0.6


@dataclass(frozen=True)
class Dataset:
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray
    sha256: str
    n_samples: int


@dataclass(frozen=True)
class Variant:
    version: str
    description: str
    build: Callable[[int], Pipeline]
    # Turns the clean training labels into the ones this variant learns from.
    corrupt_labels: Callable[[np.ndarray, int], tuple[np.ndarray, dict[str, Any]]]


def load_dataset(seed: int) -> Dataset:
    X, y = load_digits(return_X_y=True)
    X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.int64)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=seed, stratify=y
    )
    return Dataset(X_train, X_test, y_train, y_test, dataset_sha256(X, y), len(y))


def dataset_sha256(X: np.ndarray, y: np.ndarray) -> str:
    """sha256 over the raw bytes of X then y (float64 and int64, C order)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _clean_labels(y: np.ndarray, _seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    return y.copy(), {"kind": "none"}


def _randomly_relabelled(y: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    rng = np.random.default_rng(seed)
    corrupted = y.copy()
    n_corrupted = int(DEGRADED_CORRUPTION_FRACTION * len(y))
    picked = rng.choice(len(y), size=n_corrupted, replace=False)
    corrupted[picked] = rng.integers(0, len(CLASSES), size=n_corrupted)
    return corrupted, {
        "kind": "random_relabel",
        "fraction_resampled": DEGRADED_CORRUPTION_FRACTION,
        "labels_changed": int(np.sum(corrupted != y)),
    }


def _class_relabelled(y: np.ndarray, _seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    biased = y.copy()
    target = biased == BIASED_TARGET_CLASS
    biased[target] = BIASED_REPLACEMENT_CLASS
    return biased, {
        "kind": "class_relabel",
        "target_class": BIASED_TARGET_CLASS,
        "relabelled_as": BIASED_REPLACEMENT_CLASS,
        "labels_changed": int(np.sum(target)),
    }


def _baseline(seed: int) -> Pipeline:
    return Pipeline(
        [
            ("select", SelectKBest(f_classif, k=12)),
            ("classify", LogisticRegression(C=1.0, max_iter=2000, random_state=seed)),
        ]
    )


def _regularised_logistic(seed: int) -> Pipeline:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=0.1, max_iter=2000, random_state=seed)),
        ]
    )


VARIANTS: dict[str, Variant] = {
    variant.version: variant
    for variant in (
        Variant(
            "1.0.0",
            "Baseline: logistic regression on the 12 most informative pixels (ANOVA F-test).",
            _baseline,
            _clean_labels,
        ),
        Variant(
            "2.0.0",
            "Standardised, L2-regularised (C=0.1) logistic regression on all 64 pixels.",
            _regularised_logistic,
            _clean_labels,
        ),
        Variant(
            "2.1.0-degraded",
            "2.0.0's recipe trained on corrupted labels (60% of training labels redrawn at random).",
            _regularised_logistic,
            _randomly_relabelled,
        ),
        Variant(
            "2.2.0-biased",
            f"2.0.0's recipe with every training '{BIASED_TARGET_CLASS}' relabelled "
            f"'{BIASED_REPLACEMENT_CLASS}': blind to class {BIASED_TARGET_CLASS}.",
            _regularised_logistic,
            _class_relabelled,
        ),
    )
}


def evaluate(model: ClassifierMixin, X_test: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    predicted = model.predict(X_test)
    recalls = recall_score(y_test, predicted, labels=list(CLASSES), average=None, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(y_test, predicted)), 6),
        "per_class_recall": {str(cls): round(float(r), 6) for cls, r in zip(CLASSES, recalls, strict=True)},
        "n_test": len(y_test),
    }


def serialise(model: Any) -> bytes:
    buffer = io.BytesIO()
    # Uncompressed: compression adds nothing for models this small and one less thing to vary.
    joblib.dump(model, buffer, compress=0)
    return buffer.getvalue()


def _json_safe(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    return repr(value)


def estimator_parameters(model: Pipeline) -> dict[str, Any]:
    """The pipeline's steps with their non-nested parameters, as JSON."""
    return {
        name: {"estimator": type(step).__name__, "params": _json_safe(step.get_params(deep=False))}
        for name, step in model.steps
    }


def source_commit(repo_dir: Path | None = None) -> str:
    cwd = repo_dir or Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and len(commit) == 40 else "unknown"


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


@dataclass(frozen=True)
class TrainingResult:
    version: str
    version_dir: Path
    artifact_sha256: str
    metrics: dict[str, Any]
    written: bool


def train_variant(variant: Variant, dataset: Dataset, seed: int) -> tuple[Pipeline, bytes, dict[str, Any]]:
    y_train, corruption = variant.corrupt_labels(dataset.y_train, seed)
    model = variant.build(seed)
    # One BLAS thread: multi-threaded reductions may sum in a different order and change the last bits.
    with threadpoolctl.threadpool_limits(limits=1), warnings.catch_warnings():
        # f_classif divides by zero on the always-blank border pixels; those get a NaN score and are skipped.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        model.fit(dataset.X_train, y_train)
    return model, serialise(model), corruption


def build_card(
    variant: Variant,
    dataset: Dataset,
    seed: int,
    model: Pipeline,
    artifact: bytes,
    corruption: dict[str, Any],
) -> dict[str, Any]:
    return {
        "schema_version": MODEL_CARD_SCHEMA_VERSION,
        "model": MODEL_NAME,
        "version": variant.version,
        "description": variant.description,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_commit": source_commit(),
        "seed": seed,
        "data": {
            "source": "sklearn.datasets.load_digits",
            "sha256": dataset.sha256,
            "n_samples": dataset.n_samples,
            "n_features": N_FEATURES,
            "classes": list(CLASSES),
            "split": {
                "test_size": TEST_SIZE,
                "stratified": True,
                "random_state": seed,
                "n_train": len(dataset.y_train),
                "n_test": len(dataset.y_test),
            },
            "label_corruption": corruption,
        },
        "training": {"pipeline": estimator_parameters(model)},
        "metrics": evaluate(model, dataset.X_test, dataset.y_test),
        "libraries": library_versions(),
        "artifact": {"file": MODEL_FILE_NAME, "sha256": sha256_bytes(artifact), "bytes": len(artifact)},
    }


def train(out_dir: Path, versions: list[str] | None = None, seed: int = DEFAULT_SEED) -> list[TrainingResult]:
    """Train the chosen versions into out_dir/digits/<version>/; leave identical existing artifacts alone."""
    unknown = sorted(set(versions or []) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown versions {unknown}; known: {sorted(VARIANTS)}")
    dataset = load_dataset(seed)
    results = []
    for version in versions or list(VARIANTS):
        variant = VARIANTS[version]
        version_dir = out_dir / MODEL_NAME / version
        model, artifact, corruption = train_variant(variant, dataset, seed)
        card = build_card(variant, dataset, seed, model, artifact, corruption)
        artifact_path = version_dir / MODEL_FILE_NAME
        unchanged = (
            artifact_path.is_file()
            and (version_dir / MODEL_CARD_FILE_NAME).is_file()
            and sha256_file(artifact_path) == card["artifact"]["sha256"]
            and _card_matches(version_dir, card)
        )
        if not unchanged:
            write_atomically(artifact_path, artifact)
            write_model_card(version_dir, card)
        results.append(
            TrainingResult(version, version_dir, card["artifact"]["sha256"], card["metrics"], not unchanged)
        )
    return results


def _card_matches(version_dir: Path, card: dict[str, Any]) -> bool:
    """An existing card is kept when everything but its creation time and commit agrees."""
    try:
        existing = read_model_card(version_dir)
    except ValueError:
        return False
    volatile = {"created_at", "source_commit"}
    return {k: v for k, v in existing.items() if k not in volatile} == {
        k: v for k, v in card.items() if k not in volatile
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelserver.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="artifact root (default: models)")
    parser.add_argument("--model", default=MODEL_NAME, choices=[MODEL_NAME])
    parser.add_argument(
        "--version",
        dest="versions",
        action="append",
        choices=sorted(VARIANTS),
        help="version to train (repeatable; default: all)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    for result in train(args.out, args.versions, args.seed):
        state = "written" if result.written else "unchanged"
        target_recall = result.metrics["per_class_recall"][str(BIASED_TARGET_CLASS)]
        print(
            f"{MODEL_NAME} {result.version:<15} accuracy={result.metrics['accuracy']:.4f} "
            f"recall[{BIASED_TARGET_CLASS}]={target_recall:.2f} "
            f"sha256={result.artifact_sha256[:12]} {state} -> {result.version_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
