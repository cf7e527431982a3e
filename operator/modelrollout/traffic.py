"""The traffic contract between the engine and the traffic backends, in neutral terms.

The engine reads a ``TargetObservation`` and asks for a ``TrafficChange``; a backend (``backends/``)
turns those into its platform's objects. ``TrafficTarget`` names what a change acts on: the names a
revision recorded when it started, so an edit of the spec mid-rollout never redirects a write.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from .templates import MetricTemplate


class Readiness(enum.Enum):
    """Whether the target serves, in the engine's terms; each backend maps its platform's words to these."""

    SERVING = "serving"  # every predictor can answer (or nothing says otherwise)
    PENDING = "pending"  # some predictor has no ready server yet (Seldon v1: Creating)
    FAILED = "failed"  # the platform gave up on it (Seldon v1: Failed)


@dataclass(frozen=True)
class TargetObservation:
    """What the handler saw on the target this tick."""

    exists: bool
    stable_present: bool = False
    stable_model_uri: str = ""  # the stable predictor's model
    stable_version: str = ""  # best-effort version label of the stable model
    candidate_present: bool = False
    candidate_weight: int = 0  # the candidate's share of the traffic the rollout controls (0 if absent)
    # The share of the stable's requests copied to the candidate, whose answers nobody gets (0 = no mirror).
    candidate_mirror: int = 0
    # The traffic the stable and candidate predictors share (other predictors keep theirs). Under 100,
    # several weights round to the same share; the engine then believes the weight it asked for.
    pool: int = 100
    error: str = ""  # why the target or the stable predictor is not usable, in words
    # The candidate predictor's model ("" = not reported); lets the engine notice a predictor left over
    # from an earlier candidate that still serves the old model.
    candidate_model_uri: str = ""
    # Whether this rollout created the candidate predictor (it carries the rollout's UID). A predictor of
    # that name that someone else made is never taken over, changed or removed.
    candidate_owned: bool = True
    # Another rollout's candidate on the same stable predictor ("namespace/name" of its owner, or "").
    foreign_owner: str = ""
    readiness: Readiness = Readiness.SERVING
    # The platform's own words on its readiness, for messages ("Creating: deployment x has 0/1 ready").
    readiness_detail: str = ""

    @property
    def serving(self) -> bool:
        return self.readiness is Readiness.SERVING

    @property
    def failed(self) -> bool:
        return self.readiness is Readiness.FAILED

    def describe_readiness(self) -> str:
        return self.readiness_detail or self.readiness.value

    @property
    def ready(self) -> bool:
        return self.exists and self.stable_present

    @property
    def candidate_ours(self) -> bool:
        return self.candidate_present and self.candidate_owned


@dataclass(frozen=True)
class TrafficChange:
    """The traffic the backend must make true (a desired state, idempotent, never a delta).

    - ``weight``: the traffic state ``candidate_weight``/``mirror_percent`` (below); the candidate is
      created as a copy of stable if absent;
    - ``adopt``: the stable predictor takes the candidate's model, traffic unchanged (promotion, part 1);
    - ``promote``: the candidate predictor goes and stable takes its share (promotion, part 2);
    - ``rollback``: the candidate predictor goes and stable takes its share; with ``restore_model_uri``
      a stable predictor that already took the candidate's model goes back to that model.

    A traffic state says what each strategy needs: a canary step is a weight; an A/B test is a weight
    held for its duration (a fixed split); a shadow is weight 0 with ``mirror_percent`` of the stable's
    requests copied to the candidate, whose answers are dropped (no user ever gets one).
    """

    kind: Literal["weight", "adopt", "promote", "rollback"]
    candidate_weight: int = 0
    mirror_percent: int = 0
    restore_model_uri: str = ""
    restore_version: str = ""  # the stable's version label to restore with restore_model_uri

    def __post_init__(self) -> None:
        if not 0 <= self.candidate_weight <= 100 or not 0 <= self.mirror_percent <= 100:
            raise ValueError("weights and mirror shares are percentages from 0 to 100")
        if self.mirror_percent and (self.kind != "weight" or self.candidate_weight):
            raise ValueError("a mirrored candidate serves no user: mirror_percent needs kind weight at 0%")


@dataclass(frozen=True)
class TrafficTarget:
    """What a traffic change acts on."""

    kind: str  # e.g. SeldonDeployment
    name: str
    stable_predictor: str
    candidate_predictor: str
    candidate_model_uri: str
    candidate_version: str
    owner_uid: str  # the ModelRollout's UID: written on the candidate predictor it creates
    owner_name: str = ""  # "namespace/name" of the ModelRollout, for people reading the predictor
    node: str = ""  # the graph node that holds the model ("" = the graph's one MODEL node)
    replicas: int = 1  # the candidate's replicas
    copy_autoscaling: bool = False
    copy_explainer: bool = False


@dataclass(frozen=True)
class TargetKind:
    """What the operator knows of one kind of model deployment without talking to it: spec validation
    reads it (which kinds and builtin templates exist), analysis renders its queries, and the handlers
    make one backend per registered kind (``backends.TARGET_KINDS``)."""

    kind: str  # spec.targetRef.kind
    api_versions: tuple[str, ...]  # spec.targetRef.apiVersion values it accepts; the first is the default
    # The builtin metric templates over what this platform's data plane exports, by name.
    builtin_templates: Mapping[str, MetricTemplate] = field(default_factory=dict)
    # The candidate's requests over {{interval}}: the minRequests gate (its value query).
    request_count: MetricTemplate = field(default_factory=MetricTemplate)


def share_of(weight: int, pool: int) -> int:
    """The traffic a weight (percent of the pool) gives the candidate, in whole percent of all traffic."""
    return round(weight * pool / 100)


class ForeignPredictorError(RuntimeError):
    """The write would change a predictor this rollout did not create: refused before it is sent."""


class TrafficRefused(RuntimeError):
    """The target refused the write for good (an admission webhook, a validation error): asking again
    will not help, so the rollout fails with the refusal's message."""
