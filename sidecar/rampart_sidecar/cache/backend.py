"""The one interface every cache tier implements."""

from __future__ import annotations

from typing import Protocol

from .entry import CacheEntry, VaryMarker

__all__ = ["CacheBackend", "Stored"]

Stored = CacheEntry | VaryMarker


class CacheBackend(Protocol):
    name: str

    @property
    def available(self) -> bool:
        """False while the backend is unreachable; callers then skip it."""

    async def get(self, key: str) -> Stored | None:
        """The stored value, fresh or still inside its stale window; None otherwise."""

    async def set(self, key: str, value: Stored) -> None:
        """Store until ``value.stale_until``; errors are absorbed, never raised."""

    async def invalidate(self, path_prefix: str | None = None, path: str | None = None) -> int:
        """Delete everything, or entries whose path and query start with or equal the given one."""

    def stats(self) -> dict[str, float | int | str | bool]:
        """Entries, bytes and state, for /cache/stats and the gauges."""
