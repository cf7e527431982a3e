"""PromQL for analysis: the variable renderer. The builtin templates belong to the traffic backends (each
platform's data plane exports its own series): see ``backends/*_queries.py``.

Rendering is a pure function over validated values: every variable must be a DNS name, a PromQL
duration or a plain version name before it is substituted, so no object name or version can smuggle PromQL
into a query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..api import format_duration

VARIABLES = ("namespace", "target", "stable", "candidate", "interval", "candidateVersion", "stableVersion",
             "namespaceLabel")

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PROMQL_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
# A model version, as spec.candidate.version allows it (the CRD's pattern) and as the model server labels
# feedback outcomes with it (served_model_version): letters, digits, '.', '_', '-', at most 63 characters.
_VERSION = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_VERSION_WHAT = "a version name ([A-Za-z0-9._-], starting and ending alphanumeric, at most 63 characters)"

class QueryError(ValueError):
    """A query that cannot be rendered: an unknown variable or a value that is not a safe name."""


@dataclass(frozen=True)
class QueryVariables:
    """The values a query may use. Names and the window are validated on construction. The versions are
    validated when a query uses them, so that a query that does not is never refused because of them; an
    empty version is unknown, and a query that uses it is refused."""

    namespace: str
    target: str
    stable: str
    candidate: str
    interval: str
    candidate_version: str = ""
    stable_version: str = ""
    namespace_label: str = "namespace"

    def __post_init__(self) -> None:
        _check(self.namespace, _DNS_LABEL, "namespace", "a DNS label")
        _check(self.namespace_label, _LABEL_NAME, "namespaceLabel", "a Prometheus label name")
        _check(self.target, _DNS_SUBDOMAIN, "target", "a DNS subdomain name")
        _check(self.stable, _DNS_LABEL, "stable", "a DNS label")
        _check(self.candidate, _DNS_LABEL, "candidate", "a DNS label")
        _check(self.interval, _PROMQL_DURATION, "interval", "a PromQL duration such as 30s or 1m30s")
        for name in ("candidate_version", "stable_version"):
            if not isinstance(getattr(self, name), str):
                raise QueryError(f"{name} must be a string")

    @classmethod
    def for_window(cls, namespace: str, target: str, stable: str, candidate: str, window_s: float,
                   candidate_version: str = "", stable_version: str = "",
                   namespace_label: str = "namespace") -> QueryVariables:
        return cls(namespace=namespace, target=target, stable=stable, candidate=candidate,
                   interval=format_duration(window_s), candidate_version=candidate_version,
                   stable_version=stable_version, namespace_label=namespace_label)

    def as_dict(self) -> dict[str, str]:
        """Every variable by its template name; the versions unchecked (render_query checks what it uses)."""
        return {"namespace": self.namespace, "target": self.target, "stable": self.stable,
                "candidate": self.candidate, "interval": self.interval,
                "candidateVersion": self.candidate_version, "stableVersion": self.stable_version,
                "namespaceLabel": self.namespace_label}

    def value(self, name: str) -> str:
        """The value of the template variable ``name``, validated: a QueryError names what is wrong."""
        value = self.as_dict()[name]
        if name in _VERSIONS:
            if value == "":
                raise QueryError(f"{_VERSIONS[name]} version unknown: the query uses {{{{{name}}}}} but there is "
                                 f"no {_VERSIONS[name]} version to put there")
            _check(value, _VERSION, name, _VERSION_WHAT)
        return value


# The version variables, and whose version each is (for messages).
_VERSIONS = {"candidateVersion": "candidate", "stableVersion": "stable"}


def _check(value: str, pattern: re.Pattern[str], name: str, what: str) -> None:
    limit = 253 if pattern is _DNS_SUBDOMAIN else 63
    if not isinstance(value, str) or len(value) > limit or not pattern.fullmatch(value):
        raise QueryError(f"{{{{{name}}}}} value {value!r} is not {what}; refusing to put it into PromQL")


def template_variables(template: str) -> tuple[str, ...]:
    """The variable names a template uses, in order of first use."""
    return tuple(dict.fromkeys(m.group(1) for m in _PLACEHOLDER.finditer(template)))


def render_query(template: str, variables: QueryVariables) -> str:
    """Substitute {{namespace}}, {{target}}, {{stable}}, {{candidate}}, {{interval}}, {{candidateVersion}}
    and {{stableVersion}}. Every variable the template uses is validated first: nothing is substituted
    unless all of them are safe."""
    used = template_variables(template)
    unknown = [name for name in used if name not in VARIABLES]
    if unknown:
        known = ", ".join(f"{{{{{v}}}}}" for v in VARIABLES)
        raise QueryError(f"unknown variable {{{{{unknown[0]}}}}} in query; the known variables are {known}")
    values = {name: variables.value(name) for name in used}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)
