"""Objects as the watch last delivered them, so that a tick reads memory instead of the API server, and
which rollouts a change of a deployment concerns.

A cached copy can be behind the API server (a watch event on its way), never ahead of what was written,
but for a ModelRollout status held until the heartbeat (``store.CachedStore.hold_status``: readings only).
``store.CachedStore`` says why that is safe for ModelRollouts; a deployment's copy only feeds
observations, and every traffic write reads the deployment afresh and writes conditionally.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

Key = tuple[str, str]  # (namespace, name)

# How long, and how many, deletions are remembered: long enough to outlast a read in flight when the
# DELETED event came (a request timeout plus queueing in the Kubernetes threads), few enough to stay small.
TOMBSTONE_TTL_S = 300.0
TOMBSTONE_LIMIT = 10_000


def version_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _newer(incoming: str, held: str) -> bool:
    """Whether a copy at ``incoming`` may replace one at ``held``. resourceVersions are opaque to clients,
    but the API server's come from etcd's revision, a growing integer: when both are integers, an older
    event that arrives late does not replace a newer write; otherwise the latest to arrive wins."""
    if incoming.isdigit() and held.isdigit():
        return int(incoming) >= int(held)
    return True


def _after_deletion(incoming: str, deleted: str) -> bool:
    """Whether a copy at ``incoming`` is of an object (re-)created after a deletion at ``deleted``: a
    later resourceVersion. Like ``_newer``, only integers are compared."""
    if incoming.isdigit() and deleted.isdigit():
        return int(incoming) > int(deleted)
    return True


class ObjectCache:
    """One kind of object by (namespace, name), fed by the watch and by the operator's own writes.

    A DELETED event leaves a tombstone at the deletion's resourceVersion: a read that started before the
    deletion and answers after it (or a late event) must not bring the deleted object back.
    """

    def __init__(self, *, tombstone_ttl_s: float = TOMBSTONE_TTL_S, tombstone_limit: int = TOMBSTONE_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._tombstones: OrderedDict[Key, tuple[str, float]] = OrderedDict()  # -> (version, when), oldest first
        self._tombstone_ttl_s = tombstone_ttl_s
        self._tombstone_limit = tombstone_limit
        self._clock = clock

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached copy; callers must not change it (the next put replaces it whole)."""
        return self._objects.get((namespace, name))

    def put(self, obj: Mapping[str, Any]) -> None:
        key = _key_of(obj)
        held = self._objects.get(key)
        if held is None:
            self._expire()  # an expired tombstone refuses nothing
            tombstone = self._tombstones.get(key)
            if tombstone is not None:
                if not _after_deletion(version_of(obj), tombstone[0]):
                    return  # the object as it was before its deletion
                del self._tombstones[key]  # re-created: its copy now guards against older ones
            self._objects[key] = dict(obj)
        elif _newer(version_of(obj), version_of(held)):
            self._objects[key] = dict(obj)

    def drop(self, namespace: str, name: str) -> None:
        self._objects.pop((namespace, name), None)

    def apply(self, event: Mapping[str, Any]) -> None:
        """A Kopf watch event: a deletion drops the copy, anything else (a listing, a change) puts it."""
        raw = event.get("object")
        if not isinstance(raw, Mapping):
            return
        if event.get("type") == "DELETED":
            key = _key_of(raw)
            self.drop(*key)
            self._tombstones.pop(key, None)  # re-inserted at the end: the order stays oldest first
            self._tombstones[key] = (version_of(raw), self._clock())
            self._expire()
        else:
            self.put(raw)

    def _expire(self) -> None:
        if not self._tombstones:
            return
        cutoff = self._clock() - self._tombstone_ttl_s
        while self._tombstones and (len(self._tombstones) > self._tombstone_limit
                                    or next(iter(self._tombstones.values()))[1] < cutoff):
            self._tombstones.popitem(last=False)


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
