"""One tick of one rollout: read, observe, measure, decide, then write in the order that is safe.

The write order is the point of this module:
1. the finalizer, if the plan has traffic at stake (before anything that a deletion would have to undo);
2. the status (the decision on record, conditional on the resourceVersion that was read); a status that
   differs from the one read only in the readings of passing checks may be held in the cache instead, up
   to ``status_heartbeat_s`` after the last write (``status.without_readings``);
3. the traffic change;
4. Events, and the removal of a handled action annotation;
5. the finalizer's removal once nothing is at stake.
A crash or a conflict between any two of these leaves a status from which the next tick completes the
decision (a rollback stays a rollback, a promotion goes on) and never undoes it.

Every dependency comes in through the constructor, so the whole pipeline runs against fakes in tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .analysis import AnalysisContext, MetricProvider, TemplateSource, run_checks
from .api import GROUP, Limits, RolloutSpec, SpecError
from .backends import TrafficBackend
from .engine import ACTIVE_PHASES, Observations, Plan, PlannedCheck, decide, planned_checks, recorded_names
from .status import CheckRecord, Reason, RolloutStatus, Verdict, only_readings_differ
from .traffic import ForeignPredictorError, TargetObservation, TrafficRefused, TrafficTarget

ACTION_ANNOTATION = f"{GROUP}/action"
FINALIZER = f"{GROUP}/rollback"  # held while a rollout has traffic at stake: deletion rolls it back first
ERROR_BACKOFF_S = 5.0
ANALYSIS_DEADLINE_S = 20.0

log = logging.getLogger(__name__)


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): read it again and decide again."""


class RolloutStore(Protocol):
    """ModelRollout objects as the reconciler reads and writes them."""

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def write_status(self, namespace: str, name: str, resource_version: str,
                           status: dict[str, Any]) -> str:
        """Replace the status if the object is still at resource_version (else raise Conflict); return the
        new resourceVersion."""
        ...

    def hold_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> bool:
        """Keep ``status`` for the next read without writing it, if the object read is still at
        resource_version; False if the store cannot (then it is written)."""
        ...

    async def set_finalizers(self, namespace: str, name: str, resource_version: str,
                             finalizers: list[str]) -> str: ...

    async def clear_action(self, namespace: str, name: str, action: str) -> None:
        """Remove the action annotation if it still holds ``action`` (a newer request is kept)."""
        ...

    async def confirm(self, namespace: str, name: str, resource_version: str) -> None:
        """Raise Conflict unless the object is still at ``resource_version`` (a read may come from a cache)."""
        ...


class EventSink(Protocol):
    async def post(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


@dataclass
class TickStats:
    """What the last tick did, for telemetry."""

    checks: tuple[CheckRecord, ...] = ()
    traffic_kind: str = ""
    provider_error: bool = False


@dataclass
class Reconciler:
    store: RolloutStore
    backends: Mapping[str, TrafficBackend]
    events: EventSink
    templates: TemplateSource
    provider_for: Callable[[str], MetricProvider]
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    analysis_deadline_s: float = ANALYSIS_DEADLINE_S
    on_plan: Callable[[str, str, Plan, TickStats], None] | None = None
    # Readings alone (a check passed again) are written at most this often; 0 writes every change. Saves
    # the API server a write per rollout per interval, which is most of what a steady operator sends.
    status_heartbeat_s: float = 0.0
    _status_written_at: dict[tuple[str, str], dt.datetime] = field(default_factory=dict, init=False, repr=False)

    async def tick(self, namespace: str, name: str) -> float | None:
        """One reconcile step; seconds until the next, or None: none until the rollout or its deployment
        changes (it finished, or no longer exists)."""
        obj = await self.store.get(namespace, name)
        if obj is None:
            self.forget(namespace, name)
            return None
        metadata = obj.get("metadata") or {}
        generation = int(metadata.get("generation") or 0)
        status = RolloutStatus.from_dict(obj.get("status"))
        action = (metadata.get("annotations") or {}).get(ACTION_ANNOTATION)
        deleting = bool(metadata.get("deletionTimestamp"))
        uid = str(metadata.get("uid") or "")
        now = self.clock()
        spec: RolloutSpec | SpecError
        try:
            spec = RolloutSpec.parse(obj.get("spec") or {}, self.limits)
        except SpecError as exc:
            spec = exc

        observed_at = _traffic_target(spec, status, uid, f"{namespace}/{name}")
        backend = self.backends.get(observed_at.kind) if observed_at is not None else None
        target = TargetObservation(exists=False)
        if backend is not None and observed_at is not None:
            target = await backend.observe(namespace, observed_at)
        checks: tuple[CheckRecord, ...] | None = None
        if not isinstance(spec, SpecError) and target.ready and target.serving and not deleting:
            due = planned_checks(spec, status, now)
            if due:
                # Measure what the revision acts on: the names it recorded, never an edit of them (an edit
                # that swapped the stable and candidate names would measure the stable as the candidate).
                running = status.phase in ACTIVE_PHASES and status.revision > 0
                measured = recorded_names(spec, status) if running else spec
                checks = await self._measure(measured, namespace, due, status.stable_version)
        plan = decide(spec, generation, status, Observations(target=target, checks=checks, action=action,
                                                             deleting=deleting), now)
        return await self._carry_out(namespace, name, obj, status, plan, action, uid, checks, spec, target)

    async def _measure(self, spec: RolloutSpec, namespace: str, planned: tuple[PlannedCheck, ...],
                       stable_version: str) -> tuple[CheckRecord, ...]:
        due = tuple(p.metric for p in planned)
        provider = self.provider_for(spec.analysis.prometheus_address or self.limits.default_prometheus)
        try:
            return await asyncio.wait_for(
                run_checks(due, AnalysisContext.from_spec(spec, namespace, stable_version=stable_version,
                                                          namespace_label=self.limits.namespace_label),
                           provider, self.templates, min_requests=spec.analysis.min_requests,
                           windows={p.metric.name: p.window_s for p in planned}),
                timeout=self.analysis_deadline_s)
        except TimeoutError:
            problem = f"the analysis did not finish within {self.analysis_deadline_s:g}s"
        except Exception as exc:  # run_checks never raises; if it did, no verdict - never a crash loop
            log.exception("analysis of %s/%s failed", namespace, spec.target.name)
            problem = f"the analysis failed ({type(exc).__name__})"
        return tuple(CheckRecord(metric=m.name, verdict=Verdict.INCONCLUSIVE, value=None,
                                 message=f"{m.name}: {problem} — inconclusive", error=problem,
                                 min=m.min, max=m.max) for m in due)

    async def _carry_out(self, namespace: str, name: str, obj: dict[str, Any], before: RolloutStatus, plan: Plan,
                         action: str | None, uid: str, checks: tuple[CheckRecord, ...] | None,
                         spec: RolloutSpec | SpecError, target: TargetObservation) -> float | None:
        metadata = obj.get("metadata") or {}
        version = str(metadata.get("resourceVersion") or "")
        finalizers = list(metadata.get("finalizers") or [])
        deleting = bool(metadata.get("deletionTimestamp"))
        confirmed = False  # a conditional write this tick proved the object read is the current one
        if plan.needs_finalizer and FINALIZER not in finalizers and not deleting:
            finalizers.append(FINALIZER)
            version = await self.store.set_finalizers(namespace, name, version, finalizers)
            confirmed = True
        if plan.status != before and not self._held(namespace, name, version, before, plan, confirmed):
            version = await self.store.write_status(namespace, name, version, plan.status.to_dict())
            self._status_written_at[(namespace, name)] = self.clock()
            confirmed = True
        stats = TickStats(checks=checks or (), provider_error=any(c.error for c in checks or ()))
        if plan.traffic is not None:
            if not confirmed:
                # Decided on a copy that no write confirmed (it may come from the watch's cache and lag a
                # rollback on record): traffic follows only a status the API server still holds.
                await self.store.confirm(namespace, name, version)
            acting_on = _traffic_target(spec, plan.status, uid, f"{namespace}/{name}")
            backend = self.backends.get(acting_on.kind) if acting_on is not None else None
            if backend is None or acting_on is None:
                log.warning("%s/%s: no traffic backend for the recorded target; nothing applied", namespace, name)
            else:
                try:
                    if await backend.apply(namespace, acting_on, plan.traffic):
                        stats.traffic_kind = plan.traffic.kind
                except TrafficRefused as exc:
                    # Refused for good: record the refusal as the rollout's end (the next tick removes a
                    # candidate that is already there).
                    refused = decide(spec, plan.status.observed_generation, plan.status,
                                     Observations(target=target, refused=str(exc)), self.clock())
                    await self.store.write_status(namespace, name, version, refused.status.to_dict())
                    for event in refused.events:
                        await self.events.post(obj, event.type, event.reason, event.message)
                    return ERROR_BACKOFF_S
                except ForeignPredictorError as exc:
                    await self.events.post(obj, "Warning", Reason.TRAFFIC_REFUSED,
                                           f"Did not apply {plan.traffic.kind} to {acting_on.kind}/{acting_on.name}: "
                                           f"{exc}; it is left as it is.")
                    return ERROR_BACKOFF_S
                except (LookupError, RuntimeError) as exc:
                    # The decision is on record; the next tick asks for the same change again.
                    await self.events.post(obj, "Warning", Reason.TRAFFIC_UPDATE_FAILED,
                                           f"Could not apply {plan.traffic.kind} to {acting_on.kind}/{acting_on.name}: "
                                           f"{exc}")
                    return ERROR_BACKOFF_S
        for event in plan.events:
            await self.events.post(obj, event.type, event.reason, event.message)
        if plan.clear_action and action is not None:
            await self.store.clear_action(namespace, name, action)
        if not plan.needs_finalizer and FINALIZER in finalizers:
            await self.store.set_finalizers(namespace, name, version, [f for f in finalizers if f != FINALIZER])
        if self.on_plan is not None:
            self.on_plan(namespace, name, plan, stats)
        if plan.requeue_after is None:
            self.forget(namespace, name)
        return plan.requeue_after

    def forget(self, namespace: str, name: str) -> None:
        """The rollout finished or is gone: no heartbeat to keep for it."""
        self._status_written_at.pop((namespace, name), None)

    def _held(self, namespace: str, name: str, version: str, before: RolloutStatus, plan: Plan,
              wrote: bool) -> bool:
        """Whether this tick's status is kept in the store's cache instead of written: only readings changed,
        nothing else is written or posted this tick, and the last write is younger than the heartbeat."""
        if self.status_heartbeat_s <= 0 or wrote or plan.traffic is not None or plan.events or plan.clear_action:
            return False
        written_at = self._status_written_at.get((namespace, name))
        if written_at is None:
            return False
        since = (self.clock() - written_at).total_seconds()
        if not 0 <= since < self.status_heartbeat_s:  # due, or the clock went back: write
            return False
        if not only_readings_differ(before, plan.status):
            return False
        return self.store.hold_status(namespace, name, version, plan.status.to_dict())


def _traffic_target(spec: RolloutSpec | SpecError | None, status: RolloutStatus, uid: str,
                    owner: str) -> TrafficTarget | None:
    """What traffic writes act on: the names the revision recorded while one is on record, else the spec's."""
    recorded = bool(status.target_name) and (
        spec is None or isinstance(spec, SpecError) or status.phase in ACTIVE_PHASES
        or (status.phase is not None and status.phase.terminal and _same_candidate(spec, status)))
    usable = spec if isinstance(spec, RolloutSpec) else None
    if not recorded and usable is None:
        return None
    candidate = usable.candidate if usable is not None else None
    if recorded:
        kind, name = status.target_kind or "SeldonDeployment", status.target_name
        stable, predictor = status.stable_predictor, status.candidate_predictor
        uri, version = status.candidate_model_uri, status.candidate_version
    else:
        assert usable is not None and candidate is not None
        kind, name, stable = usable.target.kind, usable.target.name, usable.stable_predictor
        predictor, uri, version = candidate.predictor_name, candidate.model_uri, candidate.version
    return TrafficTarget(kind=kind, name=name, stable_predictor=stable, candidate_predictor=predictor,
                         candidate_model_uri=uri, candidate_version=version, owner_uid=uid, owner_name=owner,
                         node=candidate.node if candidate else "", replicas=candidate.replicas if candidate else 1,
                         copy_autoscaling=bool(candidate and candidate.copy_autoscaling),
                         copy_explainer=bool(candidate and candidate.copy_explainer))


def _same_candidate(spec: RolloutSpec, status: RolloutStatus) -> bool:
    return (spec.candidate.version, spec.candidate.model_uri) == (status.candidate_version, status.candidate_model_uri)
