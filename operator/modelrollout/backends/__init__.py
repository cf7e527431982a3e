"""Traffic backends: how a Plan's traffic change becomes real on one kind of model deployment.

A backend implements ``TrafficBackend``; the handlers pick one by ``spec.targetRef.kind`` and nothing
else in the operator knows which. Seldon Core v1 first; a Seldon Core 2 Experiment or a KServe
InferenceService backend would implement the same two methods.
"""

from __future__ import annotations

from typing import Protocol

from ..traffic import TargetObservation, TrafficChange, TrafficTarget


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
