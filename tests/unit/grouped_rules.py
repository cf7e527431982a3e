"""Grouped forms in promtool tests: every assertion about a builtin query also holds for its grouped form.

A template's grouped form answers for every rollout of a namespace at once, one series per rollout
(``templates.Grouping``); the operator reads each rollout's series out of that answer. ``with_grouped``
adds, to a promtool test of the ungrouped queries, a rule for each grouped form and, for every assertion on
an ungrouped query, the same assertion on the rollout's series of the grouped one (its labels are the
group's). So each case, with its other deployments, namespaces and predictors as noise, proves that the
grouped query gives each rollout exactly what its own query gives: the same number, the same empty
answer, the same NaN.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from modelrollout.analysis.runner import CheckQuery

GROUPED = "__grouped"


def with_grouped(rules: list[dict[str, Any]], assertions: list[dict[str, Any]],
                 queries: Mapping[str, CheckQuery]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``rules`` and ``assertions`` with the grouped twins added; ``queries`` maps record names to what
    they record. Fails if no query has a grouped form (the twins would prove nothing)."""
    grouped = {record: query for record, query in queries.items() if query.grouped}
    assert grouped, "none of these queries has a grouped form"
    twins = [_twin(assertion, grouped) for assertion in assertions]
    return ([*rules, *({"record": record + GROUPED, "expr": q.grouped} for record, q in grouped.items())],
            [*assertions, *(t for t in twins if t is not None)])


def _twin(assertion: dict[str, Any], grouped: Mapping[str, CheckQuery]) -> dict[str, Any] | None:
    expr = assertion["expr"]
    named = [record for record in grouped if re.search(_record(record), expr)]
    if not named:
        return None
    assert len(named) == 1, f"an assertion about one record at a time: {expr}"
    query = grouped[named[0]]
    selector = ",".join(f'{label}="{value}"' for label, value in query.group)
    twin_expr = re.sub(_record(named[0]), f"{named[0]}{GROUPED}{{{selector}}}", expr)
    samples = [{**sample, "labels": _with_labels(sample["labels"], query.group)} for sample in assertion["exp_samples"]]
    return {**assertion, "expr": twin_expr, "exp_samples": samples}


def _record(name: str) -> str:
    return re.escape(name) + r"(?![\w:])"


def _with_labels(labels: str, group: tuple[tuple[str, str], ...]) -> str:
    inner = labels.strip()[1:-1].strip()
    return "{" + ",".join([*([inner] if inner else []), *(f'{label}="{value}"' for label, value in group)]) + "}"
