"""Kopf handlers: thin glue between the Kubernetes API and the pure rollout logic.

They read the object, hand it to pure functions and write back what those return; they hold no state
of their own (what must survive a restart lives in the object's status).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import kopf

from .api import GROUP, PLURAL, VERSION, Phase, RolloutSpec, SpecError
from .status import Condition, ConditionType, RolloutStatus, set_condition


@dataclass
class OperatorConfig:
    prometheus_url: str = "http://127.0.0.1:9090"
    metrics_port: int = 8000


CONFIG = OperatorConfig()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Kopf's bookkeeping goes to annotations under our own prefix, never into our status schema.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 120
    settings.networking.request_timeout = 30


def initial_status(spec: dict[str, Any], generation: int, now: dt.datetime) -> tuple[RolloutStatus, str | None]:
    """The status a rollout gets when first seen, and a warning when its spec cannot be used."""
    try:
        parsed = RolloutSpec.parse(spec)
    except SpecError as exc:
        condition = Condition(ConditionType.SPEC_VALID, "False", "InvalidSpec", str(exc),
                              observed_generation=generation)
        return RolloutStatus(phase=Phase.FAILED, message=str(exc), observed_generation=generation,
                             conditions=set_condition((), condition, now)), str(exc)
    message = f"Waiting to roll out {parsed.candidate.version} on {parsed.target.kind}/{parsed.target.name}"
    conditions = set_condition((), Condition(ConditionType.SPEC_VALID, "True", "Valid", "",
                                             observed_generation=generation), now)
    conditions = set_condition(conditions, Condition(ConditionType.PROGRESSING, "Unknown", "Initialized", message,
                                                     observed_generation=generation), now)
    return RolloutStatus(phase=Phase.IDLE, message=message, observed_generation=generation,
                         candidate_version=parsed.candidate.version, conditions=conditions), None


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def initialize(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, body: kopf.Body, patch: kopf.Patch,
               **_: Any) -> None:
    if status.get("phase"):
        return  # already initialised: a restarted operator continues from status
    new, warning = initial_status(dict(spec), int(meta.get("generation") or 0), dt.datetime.now(dt.UTC))
    patch.status.update(new.to_dict())
    if warning:
        kopf.event(body, type="Warning", reason="InvalidSpec", message=warning)
    else:
        kopf.event(body, type="Normal", reason="Initialized", message=new.message)
