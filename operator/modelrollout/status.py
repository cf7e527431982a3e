"""The ModelRollout status: everything the operator must remember, so a restart resumes exactly.

``RolloutStatus.from_dict`` reads what is on the object (tolerating absent fields), ``to_dict`` writes the
shape the CRD schema declares. Conditions follow the Kubernetes API conventions: a transition time
changes only when the condition's status does.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .api import HISTORY_LIMIT, Phase


def utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def format_time(value: dt.datetime | None) -> str | None:
    return None if value is None else utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return utc(value)
    return utc(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))


class Verdict(enum.StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class ConditionType(enum.StrEnum):
    PROGRESSING = "Progressing"  # True while a rollout moves; False when it ended or is blocked
    HEALTHY = "AnalysisHealthy"  # last analysis passed (True), failed (False) or had no data (Unknown)
    SPEC_VALID = "SpecValid"  # the spec and its target can be acted on
    COMPLETED = "Completed"  # True once the current revision reached a terminal phase


class Reason(enum.StrEnum):
    """Every reason a condition or an Event of ours carries, named once (readers compare these strings)."""

    # Starting, stepping, pausing
    ROLLOUT_STARTED = "RolloutStarted"
    CANDIDATE_RESET = "CandidateReset"
    IN_PROGRESS = "InProgress"
    STEP_STARTED = "StepStarted"
    STEP_ADVANCED = "StepAdvanced"
    WEIGHT_SET = "WeightSet"
    STEPS_CHANGED = "StepsChanged"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    # Analysis and the gate
    NOT_YET_ANALYSED = "NotYetAnalysed"
    AWAITING_ANALYSIS = "AwaitingAnalysis"
    CHECKS_PASSED = "ChecksPassed"
    CHECKS_FAILED = "ChecksFailed"
    CHECKS_INCONCLUSIVE = "ChecksInconclusive"
    ANALYSIS_PASSED = "AnalysisPassed"
    ANALYSIS_STEP_PASSED = "AnalysisStepPassed"
    ANALYSIS_FAILED = "AnalysisFailed"
    AB_TEST_CANDIDATE_WON = "ABTestCandidateWon"
    AB_TEST_STABLE_KEPT = "ABTestStableKept"
    SHADOW_PASSED = "ShadowPassed"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    # Promotion and the ends of a revision
    PROMOTION_REQUESTED = "PromotionRequested"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    ROLLOUT_SUCCEEDED = "RolloutSucceeded"
    SUCCEEDED = "Succeeded"  # the terminal phases double as the reasons of their Completed condition and Event
    ROLLED_BACK = "RolledBack"
    PROMOTION_FAILED = "PromotionFailed"
    ABORTED = "Aborted"
    DELETED = "Deleted"
    FAILED = "Failed"
    # The target
    TARGET_FOUND = "TargetFound"
    TARGET_NOT_FOUND = "TargetNotFound"
    STABLE_PREDICTOR_NOT_FOUND = "StablePredictorNotFound"
    TARGET_OWNED_BY_ANOTHER = "TargetOwnedByAnother"
    CANDIDATE_NAME_TAKEN = "CandidateNameTaken"
    TARGET_FAILED = "TargetFailed"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    TRAFFIC_REFUSED = "TrafficRefused"
    TRAFFIC_UPDATE_FAILED = "TrafficUpdateFailed"
    # The spec and manual actions
    SPEC_ACCEPTED = "SpecAccepted"
    SPEC_VALID = "SpecValid"
    INVALID_SPEC = "InvalidSpec"
    NAMES_LOCKED = "NamesLocked"
    CANDIDATE_IS_STABLE = "CandidateIsStable"
    INVALID_ACTION = "InvalidAction"
    ACTION_REJECTED = "ActionRejected"


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""
    last_transition_time: dt.datetime | None = None
    observed_generation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "status": self.status, "reason": self.reason,
                               "message": self.message,
                               "lastTransitionTime": format_time(self.last_transition_time)}
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Condition:
        return cls(type=str(raw.get("type", "")), status=str(raw.get("status", "Unknown")),
                   reason=str(raw.get("reason", "")), message=str(raw.get("message", "")),
                   last_transition_time=parse_time(raw.get("lastTransitionTime")),
                   observed_generation=raw.get("observedGeneration"))


def set_condition(conditions: tuple[Condition, ...], new: Condition, now: dt.datetime) -> tuple[Condition, ...]:
    """Replace the condition of new.type in place (a new type goes last); keep its transition time unless
    the status changed. In place: the same conditions in another order are a status write for nothing."""
    old = next((c for c in conditions if c.type == new.type), None)
    when = old.last_transition_time if old is not None and old.status == new.status else now
    merged = replace(new, last_transition_time=when or now)
    if old is None:
        return (*conditions, merged)
    return tuple(merged if c.type == new.type else c for c in conditions)


@dataclass(frozen=True)
class CheckRecord:
    """One check of one metric: what the analysis measured and judged (``analysis.run_checks`` returns
    these with the ledger fields unset) and, once the engine folds it into the ledger, the latest check
    of that metric in this revision with the metric's own streaks.

    ``failures`` and ``inconclusive`` count this metric's failed and inconclusive checks since its last
    Pass ("consecutive" means exactly that: only the metric's own Pass resets them; an inconclusive check
    between two failures neither resets nor adds to the failure streak, and the reverse).
    ``window_start`` and ``weight`` say what the verdict is about: samples from window_start to ``at``,
    taken while the candidate served ``weight``%. ``baseline`` is the stable's value over the same window
    when the metric's judge compares with it. ``error`` is not persisted: it says, for this run only, that
    a configuration or infrastructure problem kept the check from measuring (the message says which).
    ``interim``: the window was shorter than the metric's (a look before a full window at this weight
    existed); it never opens the gate. ``decisive``: a failure that also holds at the interim confidence
    (``analysis.judge.INTERIM_CONFIDENCE``), which rolls back at once.
    """

    metric: str
    verdict: Verdict
    value: float | None
    message: str
    query: str = ""
    window: str = ""
    min: float | None = None
    max: float | None = None
    baseline: float | None = None
    baseline_query: str = ""
    error: str = ""
    at: dt.datetime | None = None
    window_start: dt.datetime | None = None
    weight: int = 0
    failures: int = 0
    inconclusive: int = 0
    interim: bool = False
    decisive: bool = False
    better: bool = False  # a comparison: the candidate is better than the stable beyond the tolerance
    decisively_better: bool = False  # ... and that holds at the interim confidence

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "verdict": str(self.verdict), "value": self.value,
                               "message": self.message, "query": self.query, "window": self.window,
                               "at": format_time(self.at), "windowStart": format_time(self.window_start),
                               "weight": self.weight, "failures": self.failures,
                               "inconclusive": self.inconclusive}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        if self.baseline is not None:
            out["baseline"] = self.baseline
        if self.baseline_query:
            out["baselineQuery"] = self.baseline_query
        if self.interim:
            out["interim"] = True
        if self.decisive:
            out["decisive"] = True
        if self.better:
            out["better"] = True
        if self.decisively_better:
            out["decisivelyBetter"] = True
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CheckRecord:
        value, baseline = raw.get("value"), raw.get("baseline")
        return cls(metric=str(raw.get("metric", "")), verdict=Verdict(raw.get("verdict", "Inconclusive")),
                   value=None if value is None else float(value), message=str(raw.get("message", "")),
                   baseline=None if baseline is None else float(baseline),
                   baseline_query=str(raw.get("baselineQuery") or ""),
                   query=str(raw.get("query", "")), window=str(raw.get("window", "")),
                   min=raw.get("min"), max=raw.get("max"), at=parse_time(raw.get("at")),
                   window_start=parse_time(raw.get("windowStart")), weight=int(raw.get("weight") or 0),
                   failures=int(raw.get("failures") or 0), inconclusive=int(raw.get("inconclusive") or 0),
                   interim=bool(raw.get("interim")), decisive=bool(raw.get("decisive")),
                   better=bool(raw.get("better")), decisively_better=bool(raw.get("decisivelyBetter")))


@dataclass(frozen=True)
class AnalysisStatus:
    """The per-metric ledger of the current revision: one record per metric that has been checked."""

    last_run_at: dt.datetime | None = None
    last_checks: tuple[CheckRecord, ...] = ()

    def record(self, metric: str) -> CheckRecord | None:
        return next((c for c in self.last_checks if c.metric == metric), None)

    @property
    def consecutive_failures(self) -> int:
        """The longest failure streak among the metrics (what failureLimit is compared with)."""
        return max((c.failures for c in self.last_checks), default=0)

    @property
    def consecutive_inconclusive(self) -> int:
        return max((c.inconclusive for c in self.last_checks), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"consecutiveFailures": self.consecutive_failures,
                "consecutiveInconclusive": self.consecutive_inconclusive,
                "lastRunAt": format_time(self.last_run_at),
                "lastChecks": [c.to_dict() for c in self.last_checks]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AnalysisStatus:
        return cls(last_run_at=parse_time(raw.get("lastRunAt")),
                   last_checks=tuple(CheckRecord.from_dict(c) for c in raw.get("lastChecks") or ()))


@dataclass(frozen=True)
class HistoryEntry:
    revision: int
    version: str
    model_uri: str
    result: str
    reason: str = ""
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "version": self.version, "modelUri": self.model_uri,
                "result": self.result, "reason": self.reason, "startedAt": format_time(self.started_at),
                "finishedAt": format_time(self.finished_at)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> HistoryEntry:
        return cls(revision=int(raw.get("revision") or 0), version=str(raw.get("version", "")),
                   model_uri=str(raw.get("modelUri", "")), result=str(raw.get("result", "")),
                   reason=str(raw.get("reason", "")), started_at=parse_time(raw.get("startedAt")),
                   finished_at=parse_time(raw.get("finishedAt")))


@dataclass(frozen=True)
class RolloutStatus:
    phase: Phase | None = None  # None: the operator has not seen the object yet
    message: str = ""
    observed_generation: int = 0
    revision: int = 0
    candidate_version: str = ""
    candidate_model_uri: str = ""
    stable_version: str = ""
    step_index: int = 0
    step_started_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    candidate_weight: int = 0
    candidate_mirror: int = 0  # the share of live requests copied to a shadow candidate (0: it is no shadow)
    last_handled_action: str = ""
    waiting_since: dt.datetime | None = None  # since when the target has not been serving (progressDeadline)
    # What this revision acts on, recorded when it starts: later spec edits cannot redirect its writes.
    target_kind: str = ""
    target_name: str = ""
    stable_predictor: str = ""
    candidate_predictor: str = ""
    stable_model_uri: str = ""  # stable's model when the revision started (restored if promotion fails)
    steps_hash: str = ""  # of the steps this revision follows; another hash means the steps were edited
    serving_since: dt.datetime | None = None  # first seen serving this revision's candidate (windows start after)
    weight_since: dt.datetime | None = None  # seen serving at candidate_weight since; None while not serving
    promotion_started_at: dt.datetime | None = None  # the stable predictor was asked to take the candidate's model
    analysis: AnalysisStatus = field(default_factory=AnalysisStatus)
    conditions: tuple[Condition, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def with_history(self, entry: HistoryEntry) -> RolloutStatus:
        return replace(self, history=(*self.history, entry)[-HISTORY_LIMIT:])

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": None if self.phase is None else str(self.phase),
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "revision": self.revision,
            "candidateVersion": self.candidate_version,
            "candidateModelUri": self.candidate_model_uri,
            "stableVersion": self.stable_version,
            "stepIndex": self.step_index,
            "stepStartedAt": format_time(self.step_started_at),
            "startedAt": format_time(self.started_at),
            "finishedAt": format_time(self.finished_at),
            "candidateWeight": self.candidate_weight,
            "candidateMirror": self.candidate_mirror,
            "lastHandledAction": self.last_handled_action,
            "waitingSince": format_time(self.waiting_since),
            "targetKind": self.target_kind,
            "targetName": self.target_name,
            "stablePredictor": self.stable_predictor,
            "candidatePredictor": self.candidate_predictor,
            "stableModelUri": self.stable_model_uri,
            "stepsHash": self.steps_hash,
            "servingSince": format_time(self.serving_since),
            "weightSince": format_time(self.weight_since),
            "promotionStartedAt": format_time(self.promotion_started_at),
            "analysis": self.analysis.to_dict(),
            "conditions": [c.to_dict() for c in self.conditions],
            "history": [h.to_dict() for h in self.history],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RolloutStatus:
        raw = raw or {}
        phase = raw.get("phase")
        return cls(
            phase=Phase(phase) if isinstance(phase, str) and phase in Phase._value2member_map_ else None,
            message=str(raw.get("message") or ""),
            observed_generation=int(raw.get("observedGeneration") or 0),
            revision=int(raw.get("revision") or 0),
            candidate_version=str(raw.get("candidateVersion") or ""),
            candidate_model_uri=str(raw.get("candidateModelUri") or ""),
            stable_version=str(raw.get("stableVersion") or ""),
            step_index=int(raw.get("stepIndex") or 0),
            step_started_at=parse_time(raw.get("stepStartedAt")),
            started_at=parse_time(raw.get("startedAt")),
            finished_at=parse_time(raw.get("finishedAt")),
            candidate_weight=int(raw.get("candidateWeight") or 0),
            candidate_mirror=int(raw.get("candidateMirror") or 0),
            last_handled_action=str(raw.get("lastHandledAction") or ""),
            waiting_since=parse_time(raw.get("waitingSince")),
            target_kind=str(raw.get("targetKind") or ""),
            target_name=str(raw.get("targetName") or ""),
            stable_predictor=str(raw.get("stablePredictor") or ""),
            candidate_predictor=str(raw.get("candidatePredictor") or ""),
            stable_model_uri=str(raw.get("stableModelUri") or ""),
            steps_hash=str(raw.get("stepsHash") or ""),
            serving_since=parse_time(raw.get("servingSince")),
            weight_since=parse_time(raw.get("weightSince")),
            promotion_started_at=parse_time(raw.get("promotionStartedAt")),
            analysis=AnalysisStatus.from_dict(raw.get("analysis") or {}),
            conditions=tuple(Condition.from_dict(c) for c in raw.get("conditions") or ()),
            history=tuple(HistoryEntry.from_dict(h) for h in raw.get("history") or ()),
        )


# What a check that passes again refreshes without deciding anything new: the times, values and words of the latest
# checks. A status that differs from another only in these may wait for a heartbeat instead of a write
# (``reconcile.Reconciler.status_heartbeat_s``): if it is lost, the status on record is one the operator
# wrote earlier with the same verdicts and streaks, and the worst that follows is a check made again.
def without_readings(status: RolloutStatus) -> RolloutStatus:
    """The status with the readings of its checks blanked: what must reach the API server at once when it
    changes (a phase, a weight, a verdict, a streak, a condition's status or reason, ...)."""
    checks = tuple(replace(c, value=None, message="", query="", window="", baseline=None, baseline_query="",
                           at=None, window_start=None) for c in status.analysis.last_checks)
    conditions = tuple(replace(c, message="") if c.type == ConditionType.HEALTHY else c for c in status.conditions)
    return replace(status, analysis=AnalysisStatus(last_run_at=None, last_checks=checks), conditions=conditions)


def only_readings_differ(before: RolloutStatus, after: RolloutStatus) -> bool:
    """Whether ``after`` only refreshes passing checks of ``before``: a record that is not a Pass on both
    sides (an inconclusive look, a failure) is written whenever it changes."""
    if before == after or without_readings(before) != without_readings(after):
        return False
    return all(old == new or old.verdict is new.verdict is Verdict.PASS
               for old, new in zip(before.analysis.last_checks, after.analysis.last_checks, strict=True))
