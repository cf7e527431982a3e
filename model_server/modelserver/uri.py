"""Where a model lives: the one place that turns a modelUri into a local artifact path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from modelserver.modelcard import MODEL_FILE_NAME

SUPPORTED_SCHEMES = ("file",)


class ModelUriError(ValueError):
    """The modelUri cannot be turned into a local artifact."""


@dataclass(frozen=True)
class ModelLocation:
    uri: str
    version_dir: Path
    artifact_path: Path


def resolve_model_uri(uri: str) -> ModelLocation:
    """Map `file:///abs/dir`, `file:///abs/dir/model.joblib` or a plain path to the artifact on disk.

    A directory means "the model.joblib inside it"; the directory is also where the model card is.
    Remote schemes (s3://, gs://, ...) are for an init container to download into a volume; the
    server then gets that volume's path.
    """
    uri = uri.strip()
    if not uri:
        raise ModelUriError("modelUri is empty; set MODEL_URI or the model_uri parameter")
    parsed = urlparse(uri)
    # A one-letter "scheme" would be a Windows drive; treat anything without "://" as a path.
    if "://" not in uri:
        path = Path(uri)
    elif parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ModelUriError(
                f"modelUri {uri!r} names host {parsed.netloc!r}; file URIs must be local (file:///path)"
            )
        path = Path(unquote(parsed.path))
    else:
        raise ModelUriError(
            f"modelUri scheme {parsed.scheme!r} is not supported (supported: "
            f"{', '.join(SUPPORTED_SCHEMES)} and plain paths)"
        )
    path = path.expanduser().resolve()
    if path.is_dir():
        version_dir, artifact_path = path, path / MODEL_FILE_NAME
    else:
        version_dir, artifact_path = path.parent, path
    if not artifact_path.is_file():
        raise ModelUriError(f"modelUri {uri!r}: no model artifact at {artifact_path}")
    return ModelLocation(uri=uri, version_dir=version_dir, artifact_path=artifact_path)
