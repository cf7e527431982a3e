"""The ModelRollout store the ticks use: reads from the watch's cache, writes through to the API server.

A cached copy can lag the API server (a watch event on its way). That is safe because of how the
reconciler writes: every write to a ModelRollout is conditional on the resourceVersion it read (a stale
copy answers 409, the entry is dropped and read again), and before a traffic change the copy is confirmed
current (``confirm``) unless a conditional write in the same tick already proved it.

A copy can also be ahead of the API server in one way: a status that only refreshes passing checks, held
until the heartbeat (``hold_status``). Losing it (a watch event, a read) loses nothing a decision needs, and
``confirm`` refuses a copy whose status is not the one on record.
"""

from __future__ import annotations

import copy
from typing import Any

from .cache import ObjectCache, version_of
from .reconcile import Conflict, RolloutStore


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
        """Raise Conflict unless the API server still holds the object at ``resource_version``, with the
        status it was read with: a held status (``hold_status``) is not on record, so traffic must not
        follow a decision made from it (the read below replaces it; the next tick decides again)."""
        held = self.cache.get(namespace, name)
        current = await self._read(namespace, name)
        if current is None or version_of(current) != resource_version:
            raise Conflict(f"{namespace}/{name} changed since it was read")
        if held is not None and version_of(held) == resource_version and held.get("status") != current.get("status"):
            raise Conflict(f"{namespace}/{name} was read with a status not yet written")

    async def write_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> str:
        version = await self._conditional(namespace, name, self._inner.write_status(
            namespace, name, resource_version, status))
        self._written(namespace, name, version, status=copy.deepcopy(status))
        return version

    def hold_status(self, namespace: str, name: str, resource_version: str, status: dict[str, Any]) -> bool:
        """Keep ``status`` in the cached copy without writing it: the next tick decides from it. The API
        server's copy stays as last written; a watch event or a read replaces the held status with it.
        The dict is kept as given (not copied: the reconciler builds it for this call alone)."""
        held = self.cache.get(namespace, name)
        if held is None or version_of(held) != resource_version:
            return False
        self.cache.put({**held, "status": status})
        return True

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
        except Exception as exc:
            # Not found: deleted while the watch was re-listing (no DELETED event comes for it). Drop the
            # copy, so the next read finds it gone instead of retrying a write to a ghost for ever.
            if getattr(exc, "status", None) == 404:
                self.cache.drop(namespace, name)
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
