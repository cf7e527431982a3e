"""Traffic backends: how a Plan's traffic change becomes real on one kind of model deployment.

``TARGET_KINDS`` is the registry: one ``TargetKind`` per supported ``spec.targetRef.kind``, pure data
(its API versions and its builtin metric templates). Spec validation reads it to accept a kind and a
builtin template; ``backends.factory`` makes one ``TrafficBackend`` per registered kind for the handlers.
A new platform (Seldon Core 2, KServe) is a ``<platform>_queries.py`` with its ``TargetKind``, a backend
module implementing ``TrafficBackend``, and one line here and one in ``factory.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..traffic import TargetKind, TargetObservation, TrafficChange, TrafficTarget
from .seldon_v1_queries import SELDON_V1

TARGET_KINDS: Mapping[str, TargetKind] = {kind.kind: kind for kind in (SELDON_V1,)}


class TargetNotFound(LookupError):
    """The deployment named by targetRef does not exist."""


class TrafficBackend(Protocol):
    async def observe(self, namespace: str, target: TrafficTarget) -> TargetObservation:
        """What the deployment looks like now: never raises for a missing target, reports it instead."""
        ...

    async def apply(self, namespace: str, target: TrafficTarget, change: TrafficChange) -> bool:
        """Make the change true (idempotently); return whether anything had to be written.

        Raises LookupError (target or stable predictor gone), ForeignPredictorError (the write would
        touch a predictor this rollout did not create) or RuntimeError (it could not be done now)."""
        ...
