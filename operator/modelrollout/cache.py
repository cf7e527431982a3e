"""Objects as the watch last delivered them, so that a tick reads memory instead of the API server, and
which rollouts a change of a deployment concerns.

A cached copy can be behind the API server (a watch event on its way), never ahead of what was written.
``store.CachedStore`` says why that is safe for ModelRollouts; a deployment's copy only feeds
observations, and every traffic write reads the deployment afresh and writes conditionally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, name)


def version_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _newer(incoming: str, held: str) -> bool:
    """Whether a copy at ``incoming`` may replace one at ``held``. resourceVersions are opaque to clients,
    but the API server's come from etcd's revision, a growing integer: when both are integers, an older
    event that arrives late does not replace a newer write; otherwise the latest to arrive wins."""
    if incoming.isdigit() and held.isdigit():
        return int(incoming) >= int(held)
    return True


class ObjectCache:
    """One kind of object by (namespace, name), fed by the watch and by the operator's own writes."""

    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached copy; callers must not change it (the next put replaces it whole)."""
        return self._objects.get((namespace, name))

    def put(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        held = self._objects.get(key)
        if held is None or _newer(version_of(obj), version_of(held)):
            self._objects[key] = dict(obj)

    def drop(self, namespace: str, name: str) -> None:
        self._objects.pop((namespace, name), None)

    def apply(self, event: Mapping[str, Any]) -> None:
        """A Kopf watch event: a deletion drops the copy, anything else (a listing, a change) puts it."""
        raw = event.get("object")
        if not isinstance(raw, Mapping):
            return
        if event.get("type") == "DELETED":
            meta = raw.get("metadata") or {}
            self.drop(str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        else:
            self.put(raw)


class TargetIndex:
    """Which rollouts act on which deployment, so a change of the deployment wakes exactly those rollouts.
    A rollout depends on its spec's target and, while a revision runs, on the one it recorded."""

    def __init__(self) -> None:
        self._rollouts: dict[Key, set[str]] = {}  # (namespace, target) -> rollout names
        self._targets: dict[Key, set[str]] = {}  # (namespace, rollout) -> target names

    def track(self, namespace: str, rollout: str, targets: set[str]) -> None:
        self.forget(namespace, rollout)
        self._targets[(namespace, rollout)] = set(targets)
        for target in targets:
            self._rollouts.setdefault((namespace, target), set()).add(rollout)

    def forget(self, namespace: str, rollout: str) -> None:
        for target in self._targets.pop((namespace, rollout), set()):
            names = self._rollouts.get((namespace, target))
            if names is not None:
                names.discard(rollout)
                if not names:
                    del self._rollouts[(namespace, target)]

    def rollouts_of(self, namespace: str, target: str) -> set[str]:
        return set(self._rollouts.get((namespace, target), ()))


def targets_of(rollout: Mapping[str, Any], kind: str) -> set[str]:
    """The names of the ``kind`` deployments a ModelRollout depends on (its spec's and its recorded one)."""
    spec_ref = (rollout.get("spec") or {}).get("targetRef") or {}
    status = rollout.get("status") or {}
    names = set()
    if spec_ref.get("kind", kind) == kind and spec_ref.get("name"):
        names.add(str(spec_ref["name"]))
    if status.get("targetKind", kind) == kind and status.get("targetName"):
        names.add(str(status["targetName"]))
    return names
