"""The ModelRollout API: typed views of spec and status, parsing, defaults and durations.

The CRD schema (crds/) rejects malformed objects before the operator sees them; this module turns what
got through into plain dataclasses, applies the same defaults and raises ``SpecError`` (naming the
field) for anything the schema could not catch, so the rest of the code never reads raw dicts.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .backends import TARGET_KINDS
from .templates import MetricTemplate, Shape
from .traffic import TargetKind

GROUP = "modelrollout.dev"
VERSION = "v1alpha1"
PLURAL = "modelrollouts"
TEMPLATE_PLURAL = "analysistemplates"
KIND = "ModelRollout"

SELDON_GROUP = "machinelearning.seldon.io"
SELDON_VERSION = "v1"
SELDON_PLURAL = "seldondeployments"

DEFAULT_INTERVAL = "30s"
DEFAULT_FAILURE_LIMIT = 2
DEFAULT_INCONCLUSIVE_LIMIT = 4
DEFAULT_PROGRESS_DEADLINE = "10m"
DEFAULT_MIN_REQUESTS = 50
DEFAULT_SCRAPE_INTERVAL_S = 30.0  # kube-prometheus-stack's default scrape interval
# A statistical judge's failure that also holds at this confidence is decisive: it rolls back at once. The
# interim analyses of group-sequential trials use the same bar (Haybittle-Peto: p < 0.001).
INTERIM_CONFIDENCE = 0.999
MAX_WARMUP_S = 3600.0
SCRAPES_PER_WINDOW = 4  # rate() needs two samples; four scrapes keep one lost scrape from emptying a window
DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
CANDIDATE_SUFFIX = "-candidate"
HISTORY_LIMIT = 10

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_FULL = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class SpecError(ValueError):
    """A spec the schema let through but the operator cannot act on; names the offending field."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


class Phase(enum.StrEnum):
    IDLE = "Idle"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED})


def parse_duration(text: str, field_path: str = "duration") -> float:
    """Seconds in a Go-style duration such as "30s", "1m30s" or "250ms" (no sign: negative is invalid)."""
    if not isinstance(text, str) or not _DURATION_FULL.fullmatch(text):
        raise SpecError(field_path, f"{text!r} is not a duration like 30s, 1m30s or 250ms")
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest PromQL-compatible duration for a number of seconds (whole seconds, at least 1s)."""
    total = max(1, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value]
    return "".join(parts)


@dataclass(frozen=True)
class Limits:
    """What the operator was started with and a spec must fit: the scrape interval its Prometheus uses
    (query windows must hold several scrapes) and the Prometheus addresses a spec may name."""

    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S
    default_prometheus: str = DEFAULT_PROMETHEUS_URL
    allowed_prometheus: frozenset[str] = frozenset()  # besides default_prometheus
    namespace_label: str = "namespace"  # where the scrape puts the namespace (kubernetes_namespace, ...)

    @property
    def min_window_s(self) -> float:
        return SCRAPES_PER_WINDOW * self.scrape_interval_s

    def prometheus_allowed(self, address: str) -> bool:
        wanted = address.rstrip("/")
        return wanted in {a.rstrip("/") for a in (self.default_prometheus, *self.allowed_prometheus)}


@dataclass(frozen=True)
class TargetRef:
    kind: str
    name: str
    api_version: str = f"{SELDON_GROUP}/{SELDON_VERSION}"


@dataclass(frozen=True)
class Candidate:
    model_uri: str
    version: str
    predictor_name: str
    node: str = ""  # the graph node to give the candidate's model ("" = the graph's one MODEL node)
    replicas: int = 1
    copy_autoscaling: bool = False
    copy_explainer: bool = False


class StrategyKind(enum.StrEnum):
    """spec.strategy's one key: how the candidate's traffic moves (engine/strategy.py)."""

    CANARY = "canary"
    AB_TEST = "abTest"
    SHADOW = "shadow"


class StepKind(enum.StrEnum):
    SET_WEIGHT = "setWeight"
    PAUSE = "pause"
    ANALYSIS = "analysis"
    # The shadow strategy's first step (never written by hand): the candidate gets a copy of ``mirror``
    # percent of the live requests and answers nobody, for at least ``duration_s`` of serving time.
    MIRROR = "mirror"


@dataclass(frozen=True)
class Step:
    kind: StepKind
    weight: int | None = None  # setWeight
    duration_s: float | None = None  # pause (None = until resumed); mirror (at least this long)
    metrics: tuple[str, ...] = ()  # analysis; empty = all metrics
    mirror: int = 0  # mirror: the share of live requests copied to the candidate

    def describe(self) -> str:
        if self.kind is StepKind.SET_WEIGHT:
            return f"set candidate weight to {self.weight}%"
        if self.kind is StepKind.MIRROR:
            return f"shadow {self.mirror}% of requests for at least {format_duration(self.duration_s or 0)}"
        if self.kind is StepKind.PAUSE:
            return "pause until resumed" if self.duration_s is None else f"pause for {self.duration_s:g}s"
        return f"analysis of {', '.join(self.metrics) or 'all metrics'}"


MAX_AB_TEST_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ABTest:
    """spec.strategy.abTest: both models serve a fixed split for a duration; the primary metric's comparison
    picks the winner (engine/abtest.py)."""

    weight: int  # the candidate's share during the test
    duration_s: float  # serving time at the split before the decision
    primary: str  # an analysis metric judged by compare
    stop_early: bool = False  # decide as soon as the primary is decisive either way


MAX_SHADOW_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Shadow:
    """spec.strategy.shadow: the candidate first serves as Seldon's shadow predictor (a mirror of live
    requests, its answers dropped), then follows its own canary steps, or none (engine/shadow.py)."""

    mirror_percent: int  # the share of live requests copied to the candidate
    duration_s: float  # at least this much serving time as a shadow, and every metric passing there


class JudgeKind(enum.StrEnum):
    """How a metric's measurement becomes a verdict (analysis/judge.py)."""

    THRESHOLD = "threshold"  # the candidate's value (or, with a confidence, its interval) against min/max
    COMPARE = "compare"  # the candidate against the stable model over the same window, with statistics


@dataclass(frozen=True)
class Compare:
    """A comparative judge's settings (spec.analysis.metrics[].compare). What ``tolerance`` means depends
    on the template's comparison shape: a proportion's tolerated degradation (absolute, or a share of the
    stable's with ``relative``), a histogram's tolerated relative slowdown (0.2 = 20% slower)."""

    tolerance: float = 0.0
    relative: bool = False
    confidence: float = 0.95
    min_samples: int = 100  # per side; fewer is inconclusive
    max_psi: float | None = None  # distribution: Population Stability Index bound
    max_js: float | None = None  # distribution: Jensen-Shannon distance bound


@dataclass(frozen=True)
class Metric:
    name: str
    template: str | None = None  # builtin
    template_ref: str | None = None  # AnalysisTemplate name
    query: str | None = None  # custom PromQL
    window_s: float | None = None  # None = analysis interval
    min: float | None = None
    max: float | None = None
    judge: JudgeKind = JudgeKind.THRESHOLD
    confidence: float | None = None  # threshold: judge the proportion's interval at this confidence, not the point
    compare: Compare | None = None
    # Measured only while the candidate is a shadow (its answers against the live ones): once it goes live
    # nothing is mirrored, so the metric is neither checked nor required there.
    shadow_only: bool = False


@dataclass(frozen=True)
class AnalysisSpec:
    interval_s: float = 30.0
    failure_limit: int = DEFAULT_FAILURE_LIMIT
    inconclusive_limit: int = DEFAULT_INCONCLUSIVE_LIMIT
    min_requests: int = DEFAULT_MIN_REQUESTS
    prometheus_address: str | None = None
    metrics: tuple[Metric, ...] = ()
    default_window_s: float = 30.0  # a metric without a window reads this far back: max(interval, min window)
    warmup_s: float = 0.0  # the candidate's first seconds of serving in a revision are never judged
    min_window_s: float = 0.0  # the shortest window rate() can read at the operator's scrape interval

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def window_s(self, metric: Metric) -> float:
        """How far back a check of this metric reads."""
        return metric.window_s if metric.window_s is not None else self.default_window_s

    def looks_early(self, metric: Metric) -> bool:
        """Whether this metric is also checked before a full window at a weight exists (an interim look):
        only judges whose verdicts account for the sample size (comparisons, thresholds on an interval)."""
        return metric.compare is not None or metric.confidence is not None


@dataclass(frozen=True)
class RolloutSpec:
    target: TargetRef
    stable_predictor: str
    candidate: Candidate
    steps: tuple[Step, ...]
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)
    progress_deadline_s: float = 600.0  # how long the target may stay not serving before a rollback
    strategy: StrategyKind = StrategyKind.CANARY
    ab_test: ABTest | None = None  # strategy abTest's settings (its one step sets the split)
    shadow: Shadow | None = None  # strategy shadow's settings (its first step is the mirror)

    @classmethod
    def parse(cls, spec: Mapping[str, Any], limits: Limits | None = None) -> RolloutSpec:
        """Parse a ModelRollout ``spec``; raise SpecError naming the field when it cannot be used.

        ``limits`` are the operator's settings the spec must fit (scrape interval, allowed Prometheus).
        """
        limits = limits or Limits()
        target_raw = _mapping(spec, "targetRef", "spec.targetRef", required=True)
        kind_name = _str(target_raw, "kind", "spec.targetRef.kind")
        kind = TARGET_KINDS.get(kind_name)
        if kind is None:
            raise SpecError("spec.targetRef.kind",
                            f"unsupported kind {kind_name!r}; supported: {', '.join(sorted(TARGET_KINDS))}")
        target = TargetRef(kind=kind_name, name=_str(target_raw, "name", "spec.targetRef.name"),
                           api_version=str(target_raw.get("apiVersion") or kind.api_versions[0]))
        if target.api_version not in kind.api_versions:
            raise SpecError("spec.targetRef.apiVersion", f"{target.api_version!r} is not an API version of "
                            f"{kind_name}; supported: {', '.join(kind.api_versions)}")
        stable = _str(spec, "stablePredictor", "spec.stablePredictor")
        _dns_label(stable, "spec.stablePredictor")
        cand_raw = _mapping(spec, "candidate", "spec.candidate", required=True)
        predictor_name = str(cand_raw.get("predictorName") or f"{stable}{CANDIDATE_SUFFIX}"[:63].rstrip("-"))
        _dns_label(predictor_name, "spec.candidate.predictorName")
        if predictor_name == stable:
            raise SpecError("spec.candidate.predictorName", "must differ from stablePredictor")
        replicas = cand_raw.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise SpecError("spec.candidate.replicas", f"{replicas!r} is not a whole number of at least 1")
        candidate = Candidate(
            model_uri=_str(cand_raw, "modelUri", "spec.candidate.modelUri"),
            version=_str(cand_raw, "version", "spec.candidate.version"),
            predictor_name=predictor_name,
            node=str(cand_raw.get("node") or ""),
            replicas=replicas,
            copy_autoscaling=bool(cand_raw.get("autoscaling", False)),
            copy_explainer=bool(cand_raw.get("explainer", False)),
        )
        strategy, steps, settings = _parse_strategy(_mapping(spec, "strategy", "spec.strategy", required=True))
        ab_test = settings if isinstance(settings, ABTest) else None
        shadow = settings if isinstance(settings, Shadow) else None
        analysis = _parse_analysis(spec.get("analysis") or {}, limits, kind)
        if ab_test is not None:
            analysis = _ab_test_primary(analysis, ab_test)
        shadow_only = [m.name for m in analysis.metrics if m.shadow_only]
        if shadow_only and shadow is None:
            raise SpecError("spec.analysis.metrics", f"{', '.join(shadow_only)} measure(s) a shadow's answers, "
                                                     "which only strategy shadow has")
        if shadow is not None and not analysis.metrics:
            raise SpecError("spec.analysis.metrics", "a shadow is there to be measured: strategy shadow needs at "
                                                     "least one metric (its errors, latency, or its answers' drift)")
        written = steps[1:] if shadow is not None else steps  # the mirror step is the strategy's, not the user's
        steps_path = f"spec.strategy.{strategy}.steps"
        for i, step in enumerate(written):
            for name in step.metrics:
                if analysis.metric(name) is None:
                    raise SpecError(f"{steps_path}[{i}].analysis.metrics",
                                    f"names metric {name!r}, which spec.analysis.metrics does not define")
            if step.kind is StepKind.ANALYSIS and not analysis.metrics:
                raise SpecError(f"{steps_path}[{i}].analysis", "an analysis step needs spec.analysis.metrics")
        weights = [s.weight or 0 for s in steps if s.kind is StepKind.SET_WEIGHT]
        if shadow is None and analysis.metrics and (not weights or weights[-1] == 0):
            raise SpecError(steps_path,
                            "the last setWeight must give the candidate traffic: promotion needs every metric to "
                            "pass at the final weight, and nothing can be measured at 0%")
        if shadow is not None and weights and weights[-1] == 0:
            raise SpecError(steps_path, "the last setWeight must give the candidate traffic (or set none: the "
                                        "shadow is promoted once every metric passed on its mirrored requests)")
        compared = [m.name for m in analysis.metrics if m.judge is JudgeKind.COMPARE]
        if compared and 100 in weights:
            raise SpecError(steps_path,
                            f"a setWeight of 100 leaves the stable model no traffic, and {', '.join(compared)} "
                            "compare(s) the candidate with it: end the steps below 100% (promotion moves the rest)")
        deadline = parse_duration(str(spec.get("progressDeadline") or DEFAULT_PROGRESS_DEADLINE),
                                  "spec.progressDeadline")
        return cls(target=target, stable_predictor=stable, candidate=candidate, steps=steps, analysis=analysis,
                   progress_deadline_s=deadline, strategy=strategy, ab_test=ab_test, shadow=shadow)


def _parse_strategy(raw: Mapping[str, Any]) -> tuple[StrategyKind, tuple[Step, ...], ABTest | Shadow | None]:
    """spec.strategy names exactly one strategy; its steps (canary: the weights, pauses and analyses; abTest:
    the one split; shadow: the mirror, then its own canary steps) and, for abTest and shadow, their settings."""
    named = [key for key in raw if raw.get(key) is not None]
    supported = ", ".join(StrategyKind)
    unknown = sorted(key for key in named if key not in set(StrategyKind))
    if unknown:
        raise SpecError("spec.strategy", f"unknown strategy {unknown[0]!r}; supported: {supported}")
    if len(named) != 1:
        raise SpecError("spec.strategy", f"names exactly one strategy ({supported})")
    kind = StrategyKind(named[0])
    body = _mapping(raw, kind, f"spec.strategy.{kind}", required=True)
    if kind is StrategyKind.AB_TEST:
        test = _parse_ab_test(body)
        return kind, (Step(StepKind.SET_WEIGHT, weight=test.weight),), test
    steps_raw = body.get("steps")
    if kind is StrategyKind.SHADOW:
        shadow = _parse_shadow(body)
        if steps_raw is None:
            steps_raw = []
    elif not isinstance(steps_raw, Sequence) or isinstance(steps_raw, str) or not steps_raw:
        raise SpecError(f"spec.strategy.{kind}.steps", "needs at least one step")
    if not isinstance(steps_raw, Sequence) or isinstance(steps_raw, str):
        raise SpecError(f"spec.strategy.{kind}.steps", "must be a list of steps")
    steps = tuple(_parse_step(raw, f"spec.strategy.{kind}.steps[{i}]") for i, raw in enumerate(steps_raw))
    if kind is StrategyKind.SHADOW:
        mirror = Step(StepKind.MIRROR, mirror=shadow.mirror_percent, duration_s=shadow.duration_s)
        return kind, (mirror, *steps), shadow
    return kind, steps, None


def _parse_shadow(body: Mapping[str, Any]) -> Shadow:
    path = "spec.strategy.shadow"
    percent = body.get("mirrorPercent", 100)
    if not isinstance(percent, int) or isinstance(percent, bool) or not 1 <= percent <= 100:
        raise SpecError(f"{path}.mirrorPercent", f"{percent!r} is not an integer from 1 to 100")
    duration = _strategy_duration(body, path, "how long the candidate answers mirrored requests first",
                                  MAX_SHADOW_S)
    return Shadow(mirror_percent=percent, duration_s=duration)


def _strategy_duration(body: Mapping[str, Any], path: str, meaning: str, longest_s: float) -> float:
    """A strategy's required ``duration``: above 0, at most ``longest_s``, in whole seconds (rounded up)."""
    if "duration" not in body:
        raise SpecError(f"{path}.duration", f"is required: {meaning}")
    duration = parse_duration(str(body["duration"]), f"{path}.duration")
    if not 0 < duration <= longest_s:
        raise SpecError(f"{path}.duration", f"must be above 0 and at most {format_duration(longest_s)}")
    return float(math.ceil(duration))


def _parse_ab_test(body: Mapping[str, Any]) -> ABTest:
    path = "spec.strategy.abTest"
    weight = body.get("weight", 50)
    if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 99:
        raise SpecError(f"{path}.weight", f"{weight!r} is not an integer from 1 to 99: both models serve the test")
    duration = _strategy_duration(body, path, "how long both models serve the split", MAX_AB_TEST_S)
    primary = _str(body, "primary", f"{path}.primary")
    stop_early = body.get("stopEarly", False)
    if not isinstance(stop_early, bool):
        raise SpecError(f"{path}.stopEarly", "must be true or false")
    return ABTest(weight=weight, duration_s=duration, primary=primary, stop_early=stop_early)


def _ab_test_primary(analysis: AnalysisSpec, test: ABTest) -> AnalysisSpec:
    """The primary metric must compare the two models, and reads the whole test: its window is the duration."""
    primary = analysis.metric(test.primary)
    if primary is None:
        raise SpecError("spec.strategy.abTest.primary",
                        f"names metric {test.primary!r}, which spec.analysis.metrics does not define")
    if primary.judge is not JudgeKind.COMPARE:
        raise SpecError("spec.strategy.abTest.primary",
                        f"metric {test.primary!r} must compare the models (compare), not hold a threshold")
    if primary.window_s is not None:
        raise SpecError("spec.strategy.abTest.primary",
                        f"metric {test.primary!r} reads the whole test; leave its window unset")
    if primary.compare is not None and (primary.compare.max_psi is not None or primary.compare.max_js is not None):
        raise SpecError("spec.strategy.abTest.primary",
                        f"metric {test.primary!r} compares distributions (maxPSI/maxJS), which says how different "
                        "two models are, never which is better: choose a rate or a latency")
    shortest = max(analysis.min_window_s, analysis.interval_s)
    if test.duration_s < shortest:
        raise SpecError("spec.strategy.abTest.duration",
                        f"{format_duration(test.duration_s)} is shorter than the shortest window the primary can "
                        f"read ({format_duration(shortest)}: the analysis interval and 4 scrapes)")
    metrics = tuple(replace(m, window_s=test.duration_s) if m.name == test.primary else m for m in analysis.metrics)
    return replace(analysis, metrics=metrics)


def _parse_step(raw: Any, path: str) -> Step:
    if not isinstance(raw, Mapping):
        raise SpecError(path, "must be an object")
    present = [key for key in ("setWeight", "pause", "analysis") if key in raw]
    if len(present) != 1:
        raise SpecError(path, "sets exactly one of setWeight, pause, analysis")
    if present[0] == "setWeight":
        weight = raw["setWeight"]
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            raise SpecError(f"{path}.setWeight", f"{weight!r} is not an integer from 0 to 100")
        return Step(StepKind.SET_WEIGHT, weight=weight)
    if present[0] == "pause":
        pause = raw["pause"] or {}
        duration = pause.get("duration") if isinstance(pause, Mapping) else None
        seconds = None if duration is None else parse_duration(duration, f"{path}.pause.duration")
        return Step(StepKind.PAUSE, duration_s=seconds)
    analysis = raw["analysis"] or {}
    names = tuple(str(n) for n in (analysis.get("metrics") or ())) if isinstance(analysis, Mapping) else ()
    return Step(StepKind.ANALYSIS, metrics=names)


def _parse_analysis(raw: Mapping[str, Any], limits: Limits, kind: TargetKind) -> AnalysisSpec:
    interval = parse_duration(str(raw.get("interval", DEFAULT_INTERVAL)), "spec.analysis.interval")
    if interval < 1:
        raise SpecError("spec.analysis.interval", "must be at least 1s")
    min_window = limits.min_window_s
    metrics: list[Metric] = []
    seen: set[str] = set()
    for i, m in enumerate(raw.get("metrics") or ()):
        path = f"spec.analysis.metrics[{i}]"
        name = _str(m, "name", f"{path}.name")
        if name in seen:
            raise SpecError(f"{path}.name", f"duplicate metric name {name!r}")
        seen.add(name)
        sources = [key for key in ("template", "templateRef", "query") if m.get(key)]
        if len(sources) != 1:
            raise SpecError(path, "sets exactly one of template, templateRef, query")
        template = m.get("template")
        if template is not None and template not in kind.builtin_templates:
            raise SpecError(f"{path}.template", f"unknown builtin {template!r} for {kind.kind}; one of "
                                                f"{', '.join(kind.builtin_templates)}")
        judge, low, high, confidence, compare = _parse_judge(m, path, kind)
        ref = m.get("templateRef")
        window = parse_duration(m["window"], f"{path}.window") if m.get("window") else None
        if window is not None and window < min_window:
            raise SpecError(f"{path}.window",
                            f"{m['window']} holds fewer than {SCRAPES_PER_WINDOW} scrapes at the operator's "
                            f"scrape interval of {format_duration(limits.scrape_interval_s)}; rate() over it "
                            f"would be empty or noisy: use at least {format_duration(min_window)}")
        metrics.append(Metric(
            name=name,
            template=template,
            template_ref=str(ref["name"]) if isinstance(ref, Mapping) and ref.get("name") else None,
            query=m.get("query"),
            window_s=window,
            min=low,
            max=high,
            judge=judge,
            confidence=confidence,
            compare=compare,
            shadow_only=template is not None and kind.builtin_templates[template].shadow_only,
        ))
    prometheus = raw.get("prometheus") or {}
    address = prometheus.get("address") if isinstance(prometheus, Mapping) else None
    if address and not limits.prometheus_allowed(str(address)):
        # Never contacted: a spec must not make the operator fetch an address it was not given.
        raise SpecError("spec.analysis.prometheus.address",
                        f"{str(address)[:200]!r} is not on the operator's list of allowed Prometheus addresses "
                        "(--allowed-prometheus-url, Helm value prometheus.allowedUrls)")
    return AnalysisSpec(
        interval_s=interval,
        failure_limit=int(raw.get("failureLimit", DEFAULT_FAILURE_LIMIT)),
        inconclusive_limit=int(raw.get("inconclusiveLimit", DEFAULT_INCONCLUSIVE_LIMIT)),
        min_requests=int(raw.get("minRequests", DEFAULT_MIN_REQUESTS)),
        prometheus_address=str(address) if address else None,
        metrics=tuple(metrics),
        default_window_s=max(interval, min_window),
        warmup_s=_warmup(raw),
        min_window_s=min_window,
    )


def _warmup(raw: Mapping[str, Any]) -> float:
    warmup = parse_duration(str(raw.get("warmup", "0s")), "spec.analysis.warmup")
    if warmup > MAX_WARMUP_S:
        raise SpecError("spec.analysis.warmup", "warmup is at most 1h")
    return float(math.ceil(warmup))  # whole seconds, as every time on status


def _parse_judge(m: Mapping[str, Any], path: str, kind: TargetKind,
                 ) -> tuple[JudgeKind, float | None, float | None, float | None, Compare | None]:
    """Which judge the metric declares, with its settings: min/max (a threshold, on the point or, with a
    confidence, on the interval) or compare (against the stable model)."""
    low, high = _number(m, "min", path), _number(m, "max", path)
    builtin = kind.builtin_templates.get(str(m.get("template"))) if m.get("template") else None
    confidence = _number(m, "confidence", path)
    if confidence is not None and not 0.5 <= confidence < 1:
        raise SpecError(f"{path}.confidence", f"{confidence:g} is not a confidence from 0.5 to below 1")
    if m.get("compare") is not None:
        if low is not None or high is not None or confidence is not None:
            raise SpecError(path, "declares two judges: either min/max (a threshold) or compare, not both")
        return JudgeKind.COMPARE, None, None, None, _parse_compare(m, path, builtin)
    if low is None and high is None:
        raise SpecError(path, "declares no judge: set min, max or both (a threshold), or compare")
    if low is not None and high is not None and low > high:
        raise SpecError(path, f"min {low:g} exceeds max {high:g}")
    if builtin is not None and not builtin.value:
        raise SpecError(path, f"template {m['template']!r} has no single value to hold against min/max; "
                              "it can only be compared with the stable model: use compare")
    if confidence is not None:
        if m.get("query"):
            raise SpecError(f"{path}.confidence", "a threshold on an interval needs counts (successes out of "
                                                  "trials): use a template that declares a proportion")
        if builtin is not None and builtin.proportion is None:
            raise SpecError(f"{path}.confidence", f"template {m['template']!r} is not a proportion; a threshold "
                                                  "on an interval needs successes out of trials")
    return JudgeKind.THRESHOLD, low, high, confidence, None


def _parse_compare(m: Mapping[str, Any], path: str, builtin: MetricTemplate | None) -> Compare:
    raw = m.get("compare")
    where = f"{path}.compare"
    if not isinstance(raw, Mapping):
        raise SpecError(where, "must be an object")
    if m.get("query"):
        raise SpecError(where, "a comparison measures both models by a template that says how: use a builtin "
                               "template or a templateRef, not an inline query")
    shape = builtin.comparable if builtin is not None else None
    if builtin is not None and shape is None:
        raise SpecError(where, f"template {m['template']!r} cannot be compared with the stable model")
    confidence = _number(raw, "confidence", where)
    min_samples = raw.get("minSamples", 100)
    if not isinstance(min_samples, int) or isinstance(min_samples, bool) or min_samples < 1:
        raise SpecError(f"{where}.minSamples", f"{min_samples!r} is not a whole number of at least 1")
    compare = Compare(tolerance=_number(raw, "tolerance", where) or 0.0, relative=bool(raw.get("relative", False)),
                      confidence=0.95 if confidence is None else confidence, min_samples=min_samples,
                      max_psi=_number(raw, "maxPSI", where), max_js=_number(raw, "maxJS", where))
    if not 0.5 <= compare.confidence < 1:
        raise SpecError(f"{where}.confidence", f"{compare.confidence:g} is not a confidence from 0.5 to below 1")
    if compare.tolerance < 0 or (compare.relative and compare.tolerance >= 1):
        raise SpecError(f"{where}.tolerance", f"{compare.tolerance:g} is not a tolerated difference (at least 0; "
                                              "relative: below 1)")
    for bound in ("max_psi", "max_js"):
        value = getattr(compare, bound)
        if value is not None and value <= 0:
            raise SpecError(f"{where}.{'maxPSI' if bound == 'max_psi' else 'maxJS'}", f"{value:g} must be above 0")
    drift = compare.max_psi is not None or compare.max_js is not None
    if shape is Shape.DISTRIBUTION and not drift:
        raise SpecError(where, f"template {m['template']!r} compares distributions: set maxPSI, maxJS or both")
    if shape in (Shape.PROPORTION, Shape.HISTOGRAM) and drift:
        raise SpecError(where, f"maxPSI and maxJS bound a distribution's drift; template {m['template']!r} "
                               f"compares a {shape.value}: set tolerance")
    if shape is Shape.PROPORTION and compare.tolerance <= 0:
        raise SpecError(f"{where}.tolerance", "a proportion's comparison needs a tolerated degradation above 0: "
                                              "the interval of a difference always reaches above 0, so a "
                                              "candidate could never pass")
    if shape is Shape.HISTOGRAM and compare.relative:
        raise SpecError(f"{where}.relative", "a latency tolerance is always relative (0.2 = 20% slower)")
    return compare


def _mapping(obj: Mapping[str, Any], key: str, path: str, required: bool = False) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path, "is required" if value is None else "must be an object")
    return value


def _str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if not isinstance(value, str) or not value:
        raise SpecError(path, "is required")
    return value


def _number(obj: Mapping[str, Any], key: str, path: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{path}.{key}", f"{value!r} is not a number")
    return float(value)


def _dns_label(value: str, path: str) -> None:
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        raise SpecError(path, f"{value!r} is not a DNS label (lowercase letters, digits and '-')")
