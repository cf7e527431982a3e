"""One traffic backend per registered target kind, made at start-up (the I/O side of the registry)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client import ApiClient

from . import TARGET_KINDS, TrafficBackend
from .seldon_v1 import SeldonV1Backend

Fence = Callable[[], float]  # seconds a write may still take; raises when this replica may not write
Watched = Callable[[str, str], Mapping[str, Any] | None]  # (namespace, name) -> the watch's copy, if any
Forget = Callable[[str, str], None]  # (namespace, name): drop the watch's copy (the API server says it is gone)
_MAKERS: dict[str, Callable[[ApiClient, float, str | None, Fence | None, Watched | None, Forget | None],
                            TrafficBackend]] = {
    "SeldonDeployment": lambda api, timeout, manager, fence, watched, forget: SeldonV1Backend(
        api, request_timeout_s=timeout, field_manager=manager, fence=fence, watched=watched, forget=forget),
}


def make_backends(api_client: ApiClient, request_timeout_s: float, field_manager: str | None = None,
                  fence: Fence | None = None, watched: Mapping[str, Watched] | None = None,
                  forget: Mapping[str, Forget] | None = None) -> dict[str, TrafficBackend]:
    """A backend for every kind spec validation accepts: a registered kind without one is a start-up error.
    ``watched``: per kind, the watch's copies of that kind's deployments; ``forget``: per kind, how to drop one."""
    missing = sorted(set(TARGET_KINDS) - set(_MAKERS))
    if missing:
        raise RuntimeError(f"no traffic backend for registered target kind(s): {', '.join(missing)}")
    return {kind: _MAKERS[kind](api_client, request_timeout_s, field_manager, fence, (watched or {}).get(kind),
                                (forget or {}).get(kind))
            for kind in TARGET_KINDS}
