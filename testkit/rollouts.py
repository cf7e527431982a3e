"""The one ModelRollout builder, ``model_rollout``, and the analysis settings the suites run with.

Everything starts from ``examples/modelrollout.yaml`` (digits 1.0.0 -> 2.0.0, its steps, its analysis);
keyword options replace what a test, a chaos scenario, a benchmark or the demo needs otherwise:

    model_rollout()                                             # the example, under a fresh name
    model_rollout(steps=STEPS, analysis=EXPORTER_ANALYSIS)      # seconds per rollout, synthetic metrics
    model_rollout("2.1.0-degraded", HOLD, analysis=LIVE_ANALYSIS, name="digits-degraded", minRequests=10)
    model_rollout(candidate={"predictorName": "main-other"}, stable="blue", prometheus={"address": url})
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import yaml

from testkit import REPO

EXAMPLE: Final[dict[str, Any]] = yaml.safe_load((REPO / "examples" / "modelrollout.yaml").read_text())

# Metrics from localcluster.executor_exporter, exactly what the test sets: a whole rollout takes seconds.
EXPORTER_ANALYSIS: Final[dict[str, Any]] = {
    "interval": "2s", "failureLimit": 2, "inconclusiveLimit": 3, "minRequests": 5,
    "metrics": [{"name": "success-rate", "template": "request-success-rate", "min": 0.95, "window": "4s"},
                {"name": "latency-p99", "template": "request-duration-p99", "max": 0.25, "window": "4s"}]}

# Live traffic (Locust through the local data plane's ingress, real model servers): short, with room
# for the model servers' real latency and for a few seconds without enough requests.
LIVE_ANALYSIS: Final[dict[str, Any]] = {
    "interval": "3s", "failureLimit": 2, "inconclusiveLimit": 8, "minRequests": 15,
    "metrics": [{"name": "success-rate", "template": "request-success-rate", "min": 0.99, "window": "8s"},
                {"name": "latency-p99", "template": "request-duration-p99", "max": 0.5, "window": "8s"}]}


def model_uri(version: str) -> str:
    """Where the local cluster's model servers find a digits version (``make models`` trains them)."""
    return f"file:///models/digits/{version}"


def model_rollout(version: str = "2.0.0", steps: Sequence[Mapping[str, Any]] | None = None, *,
                  analysis: Mapping[str, Any] | None = None, name: str | None = None, name_prefix: str = "digits",
                  target: str = "digits", stable: str = "main", candidate: Mapping[str, Any] | None = None,
                  window: str | None = None, **settings: Any) -> dict[str, Any]:
    """A ModelRollout of `target` to digits `version` (its modelUri and version), as a dict to apply.

    steps: the canary steps (default: the example's). analysis: the whole analysis block (default: the
    example's), then ``settings`` replace its keys, named as in the spec (``interval``, ``failureLimit``,
    ``inconclusiveLimit``, ``minRequests``, ``metrics``, ``prometheus``...); window: every metric's window.
    candidate: more candidate fields (``predictorName``, or a ``modelUri`` other than the version's).
    name: default ``<name_prefix>-<random>``. Nothing passed in is shared with the result.
    """
    spec: dict[str, Any] = copy.deepcopy(EXAMPLE["spec"])
    spec["targetRef"] = {"kind": "SeldonDeployment", "name": target}
    spec["stablePredictor"] = stable
    spec["candidate"] = {"modelUri": model_uri(version), "version": version, **copy.deepcopy(dict(candidate or {}))}
    if steps is not None:
        spec["strategy"] = {"canary": {"steps": copy.deepcopy(list(steps))}}
    if analysis is not None:
        spec["analysis"] = copy.deepcopy(dict(analysis))
    spec["analysis"].update(copy.deepcopy(settings))
    if window is not None:
        for metric in spec["analysis"]["metrics"]:
            metric["window"] = window
    return {"apiVersion": EXAMPLE["apiVersion"], "kind": EXAMPLE["kind"],
            "metadata": {"name": name or f"{name_prefix}-{uuid.uuid4().hex[:6]}"}, "spec": spec}
