"""What the local data plane should run and where requests go, computed from SeldonDeployments (pure).

It stands in for three Seldon/Istio parts: the controller's "one Deployment per predictor", the
executor's request metrics and Istio's weighted VirtualService with mirroring.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

MODEL_MOUNT = "/models"  # where a cluster's storage initializer would put file:///models/... artifacts


@dataclass(frozen=True)
class ServerSpec:
    """One model-server process the data plane must run."""

    namespace: str
    deployment: str
    predictor: str
    replica: int
    model_uri: str  # as written in the graph
    model_path: str  # where it is on this machine
    env: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.namespace, self.deployment, self.predictor, self.replica)


@dataclass(frozen=True)
class PredictorRoute:
    name: str
    traffic: int
    shadow: bool


@dataclass(frozen=True)
class DeploymentRoute:
    namespace: str
    deployment: str
    predictors: tuple[PredictorRoute, ...]


class ModelUriError(ValueError):
    pass


def _graph_nodes(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in node.get("children") or ():
        yield from _graph_nodes(child)


def model_uri_of(predictor: Mapping[str, Any]) -> str:
    for node in _graph_nodes(predictor.get("graph") or {}):
        if node.get("modelUri"):
            return str(node["modelUri"])
    return ""


def local_model_path(model_uri: str, models_dir: Path) -> str:
    """file:///models/digits/2.0.0 → <models_dir>/digits/2.0.0 (the volume a storage initializer fills)."""
    parsed = urlparse(model_uri)
    if parsed.scheme != "file":
        raise ModelUriError(f"modelUri {model_uri!r}: the local data plane serves file:// models only")
    path = parsed.path
    if path == MODEL_MOUNT or path.startswith(MODEL_MOUNT + "/"):
        return str(models_dir / path[len(MODEL_MOUNT):].lstrip("/"))
    return path


def _container_env(predictor: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Environment of the model container from componentSpecs, as Seldon would set it."""
    env: list[tuple[str, str]] = []
    for spec in predictor.get("componentSpecs") or ():
        for container in (spec.get("spec") or {}).get("containers") or ():
            for item in container.get("env") or ():
                if "name" in item and "value" in item:
                    env.append((str(item["name"]), str(item["value"])))
    return tuple(env)


def servers_for(sdep: Mapping[str, Any], models_dir: Path) -> tuple[list[ServerSpec], list[str]]:
    """The processes a SeldonDeployment needs, and the problems that keep some from running."""
    meta = sdep.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
    servers: list[ServerSpec] = []
    problems: list[str] = []
    for predictor in (sdep.get("spec") or {}).get("predictors") or ():
        uri = model_uri_of(predictor)
        if not uri:
            problems.append(f"predictor {predictor.get('name')!r} has no modelUri")
            continue
        try:
            path = local_model_path(uri, models_dir)
        except ModelUriError as exc:
            problems.append(str(exc))
            continue
        replicas = predictor.get("replicas")
        for replica in range(1 if replicas is None else max(0, int(replicas))):
            servers.append(ServerSpec(namespace, name, str(predictor["name"]), replica, uri, path,
                                      _container_env(predictor)))
    return servers, problems


def route_for(sdep: Mapping[str, Any]) -> DeploymentRoute:
    meta = sdep.get("metadata") or {}
    predictors = tuple(PredictorRoute(str(p.get("name")), int(p.get("traffic") or 0), bool(p.get("shadow")))
                       for p in (sdep.get("spec") or {}).get("predictors") or ())
    return DeploymentRoute(str(meta.get("namespace", "default")), str(meta.get("name", "")), predictors)


def live_choice(route: DeploymentRoute, ready: set[str], rng: random.Random | None = None) -> str | None:
    """Pick the predictor that answers one request: by traffic weight among ready, non-shadow predictors.

    A predictor that is not ready yet gets none of its share (it goes to the others, as Seldon only
    routes to available deployments); with every weight 0 the ready predictors share equally.
    """
    live = [p for p in route.predictors if not p.shadow and p.name in ready]
    if not live:
        return None
    weights: Sequence[float] = [p.traffic for p in live]
    if not any(weights):
        weights = [1.0] * len(live)
    return (rng or random).choices([p.name for p in live], weights=weights, k=1)[0]


def shadows(route: DeploymentRoute, ready: set[str]) -> list[str]:
    return [p.name for p in route.predictors if p.shadow and p.name in ready]
