"""Where analysis gets numbers (metric providers) and reusable queries (template sources)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .result import QueryOutcome


class MetricProvider(Protocol):
    """Answers one PromQL-like query with one number, no data, or an error. Must not raise."""

    async def query(self, promql: str) -> QueryOutcome: ...


class TemplateSource(Protocol):
    """Looks up the query of an AnalysisTemplate; None when there is no such template."""

    async def get(self, namespace: str, name: str) -> str | None: ...


class StaticTemplates:
    """Templates held in memory, keyed by (namespace, name): for tests and for preloaded templates."""

    def __init__(self, queries: Mapping[tuple[str, str], str] | None = None) -> None:
        self._queries = dict(queries or {})

    async def get(self, namespace: str, name: str) -> str | None:
        return self._queries.get((namespace, name))
