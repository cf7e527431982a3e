"""Objects as the watch last delivered them, so that a tick reads memory instead of the API server.

A cached copy can be behind the API server (a watch event on its way), never ahead of what it wrote. That
is safe because of how the reconciler writes: every write to a ModelRollout is conditional on the
resourceVersion it read (a stale copy answers 409, the entry is dropped and read again), and before a
traffic change the rollout's copy is confirmed current (``CachedStore.confirm``) unless a conditional
write in the same tick already proved it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .reconcile import Conflict, RolloutStore

Key = tuple[str, str]  # (namespace, name)


def _version(obj: Mapping[str, Any]) -> str:
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
        if held is None or _newer(_version(obj), _version(held)):
            self._objects[key] = dict(obj)

    def drop(self, namespace: str, name: str) -> None:
        self._objects.pop((namespace, name), None)


class CachedStore:
    """A RolloutStore that reads from the cache and writes through to the API server."""

    def __init__(self, inner: RolloutStore, cache: ObjectCache) -> None:
        self._inner = inner
        self.cache = cache

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        cached = self.cache.get(namespace, name)
        if cached is not None:
            return cached
        return await self._read(namespace, name)

    async def _read(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = await self._inner.get(namespace, name)
        if obj is None:
            self.cache.drop(namespace, name)
        else:
            self.cache.put(obj)
        return obj

    async def confirm(self, namespace: str, name: str, resource_version: str) -> None:
        """Raise Conflict unless the API server still holds the object at ``resource_version``."""
        current = await self._read(namespace, name)
        if current is None or _version(current) != resource_version:
            raise Conflict(f"{namespace}/{name} changed since it was read")

    async def write_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> str:
        version = await self._conditional(namespace, name, self._inner.write_status(
            namespace, name, resource_version, status))
        self._written(namespace, name, version, status=copy.deepcopy(status))
        return version

    async def set_finalizers(self, namespace: str, name: str, resource_version: str, finalizers: list[str]) -> str:
        version = await self._conditional(namespace, name, self._inner.set_finalizers(
            namespace, name, resource_version, finalizers))
        if not version:  # the API server deleted the object
            self.cache.drop(namespace, name)
        else:
            self._written(namespace, name, version, finalizers=list(finalizers))
        return version

    async def clear_action(self, namespace: str, name: str, action: str) -> None:
        await self._inner.clear_action(namespace, name, action)
        self.cache.drop(namespace, name)  # the annotations changed: read them again

    async def _conditional(self, namespace: str, name: str, write: Any) -> str:
        try:
            return str(await write)
        except Conflict:
            self.cache.drop(namespace, name)  # our copy was stale: the next read goes to the API server
            raise

    def _written(self, namespace: str, name: str, version: str, *, status: dict[str, Any] | None = None,
                 finalizers: list[str] | None = None) -> None:
        """What our write made true, at the version the API server gave it (the watch brings the same)."""
        held = self.cache.get(namespace, name)
        if held is None:
            return
        updated = dict(held)
        metadata = {**(held.get("metadata") or {}), "resourceVersion": version}
        if finalizers is not None:
            metadata["finalizers"] = finalizers
        updated["metadata"] = metadata
        if status is not None:
            updated["status"] = status
        self.cache.put(updated)
