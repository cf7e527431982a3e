"""One traffic backend per registered target kind, made at start-up (the I/O side of the registry)."""

from __future__ import annotations

from collections.abc import Callable

from kubernetes.client import ApiClient

from . import TARGET_KINDS, TrafficBackend
from .seldon_v1 import SeldonV1Backend

Fence = Callable[[], float]  # seconds a write may still take; raises when this replica may not write
_MAKERS: dict[str, Callable[[ApiClient, float, str | None, Fence | None], TrafficBackend]] = {
    "SeldonDeployment": lambda api, timeout, manager, fence: SeldonV1Backend(
        api, request_timeout_s=timeout, field_manager=manager, fence=fence),
}


def make_backends(api_client: ApiClient, request_timeout_s: float, field_manager: str | None = None,
                  fence: Fence | None = None) -> dict[str, TrafficBackend]:
    """A backend for every kind spec validation accepts: a registered kind without one is a start-up error."""
    missing = sorted(set(TARGET_KINDS) - set(_MAKERS))
    if missing:
        raise RuntimeError(f"no traffic backend for registered target kind(s): {', '.join(missing)}")
    return {kind: _MAKERS[kind](api_client, request_timeout_s, field_manager, fence) for kind in TARGET_KINDS}
