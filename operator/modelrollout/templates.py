"""Metric templates: the queries a metric is measured by, before their {{variables}} are filled in.

A template always has a ``value`` query (one number, what a threshold judges). A template may also say how
to measure for a comparison with the stable model, in one of three shapes:
- ``proportion``: two counts over the window, ``successes`` out of ``trials`` (success rate, accuracy);
- ``histogram``: cumulative counts by ``le`` (latency; a rank test compares the two sides);
- ``distribution``: counts by one label (predicted classes; drift measures compare the two sides).
Each query is written about the candidate; the baseline is the same query about the stable model
(``{{candidate}}``/``{{candidateVersion}}`` name the stable's predictor and version).
A template may also have a ``grouped`` form: the same queries asked once for every rollout of a namespace,
aggregated ``by`` the labels that tell rollouts apart; each rollout's answer is the series that carries its
values of those labels. The checks of many rollouts at one instant then share one query per template.
Builtin templates belong to the traffic backends (``backends/*_queries.py``); AnalysisTemplates declare
the same fields.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Shape(enum.Enum):
    PROPORTION = "proportion"
    HISTOGRAM = "histogram"
    DISTRIBUTION = "distribution"


class Part(enum.Enum):
    """One of a template's queries, by what it answers."""

    VALUE = "value"  # one number, what a threshold judges
    SUCCESSES = "successes"  # a proportion's good outcomes
    TRIALS = "trials"  # a proportion's outcomes
    BUCKETS = "buckets"  # a histogram's cumulative counts by le
    CLASSES = "classes"  # a distribution's counts by its label


@dataclass(frozen=True)
class ProportionQueries:
    successes: str  # one number: the count of good outcomes over {{interval}}
    trials: str  # one number: the count of all outcomes over {{interval}}; empty = no data


@dataclass(frozen=True)
class DistributionQuery:
    counts: str  # a vector: one count per value of ``by`` over {{interval}}
    by: str  # the label that tells the values apart (``le`` for a histogram)
    # A histogram that stands for one quantile (p90, p99): compare that quantile, not the whole distribution.
    quantile: float | None = None


@dataclass(frozen=True)
class Grouping:
    """A template's grouped form. ``template`` holds the same queries without the matchers that name one
    rollout, aggregated by the labels in ``labels``: for each, the series label and the query variable that
    holds a rollout's value of it (``("predictor_name", "candidate")``). Per rollout, the series with its
    values must answer exactly what the ungrouped query answers (tests/unit/test_promql_rules.py)."""

    template: MetricTemplate
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class MetricTemplate:
    value: str = ""  # one number ("" when the template only compares)
    proportion: ProportionQueries | None = None
    histogram: DistributionQuery | None = None  # by "le": cumulative bucket counts
    distribution: DistributionQuery | None = None
    description: str = ""
    # A measure of a shadow's answers against the live ones (agreement): there only while the candidate
    # is a shadow, and not one of each model, so it cannot be compared with the stable's.
    shadow_only: bool = False
    grouped: Grouping | None = None  # the queries for many rollouts at once (None: each rollout asks alone)

    def query(self, part: Part) -> str:
        """The query for ``part``; ValueError when the template declares none (callers ask for the parts
        its shape has)."""
        queries = {Part.VALUE: self.value,
                   Part.SUCCESSES: self.proportion.successes if self.proportion else "",
                   Part.TRIALS: self.proportion.trials if self.proportion else "",
                   Part.BUCKETS: self.histogram.counts if self.histogram else "",
                   Part.CLASSES: self.distribution.counts if self.distribution else ""}
        if not queries[part]:
            raise ValueError(f"the template has no {part.value} query")
        return queries[part]

    @property
    def shapes(self) -> tuple[Shape, ...]:
        """The comparison shapes this template can be measured in."""
        return tuple(shape for shape, part in ((Shape.PROPORTION, self.proportion), (Shape.HISTOGRAM, self.histogram),
                                               (Shape.DISTRIBUTION, self.distribution)) if part is not None)

    @property
    def comparable(self) -> Shape | None:
        """The shape a comparison uses: the first the template declares (one per template in practice)."""
        return self.shapes[0] if self.shapes and not self.shadow_only else None
