"""Model card: what an artifact is, how it was made and how good it is, stored next to it as JSON."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

MODEL_FILE_NAME = "model.joblib"
MODEL_CARD_FILE_NAME = "model-card.json"
MODEL_CARD_SCHEMA_VERSION = 1

REQUIRED_FIELDS = (
    "schema_version",
    "model",
    "version",
    "description",
    "created_at",
    "source_commit",
    "seed",
    "data",
    "training",
    "metrics",
    "libraries",
    "artifact",
)


class ModelCardError(ValueError):
    """A model card is missing, malformed or disagrees with its artifact."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_model_card(version_dir: Path, card: dict[str, Any]) -> Path:
    missing = [field for field in REQUIRED_FIELDS if field not in card]
    if missing:
        raise ModelCardError(f"model card lacks fields: {', '.join(missing)}")
    path = version_dir / MODEL_CARD_FILE_NAME
    write_atomically(path, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    return path


def read_model_card(version_dir: Path) -> dict[str, Any]:
    path = version_dir / MODEL_CARD_FILE_NAME
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelCardError(f"no model card at {path}") from exc
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"model card {path} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelCardError(f"model card {path} is not a JSON object")
    missing = [field for field in REQUIRED_FIELDS if field not in card]
    if missing:
        raise ModelCardError(f"model card {path} lacks fields: {', '.join(missing)}")
    return card


def verify_artifact(version_dir: Path, card: dict[str, Any] | None = None) -> str:
    """Check the artifact's sha256 against its card; returns the hash."""
    card = card if card is not None else read_model_card(version_dir)
    artifact_path = version_dir / card["artifact"]["file"]
    if not artifact_path.is_file():
        raise ModelCardError(f"artifact {artifact_path} named by the model card does not exist")
    actual = sha256_file(artifact_path)
    expected = card["artifact"]["sha256"]
    if actual != expected:
        raise ModelCardError(f"artifact {artifact_path} has sha256 {actual}, model card says {expected}")
    return actual
