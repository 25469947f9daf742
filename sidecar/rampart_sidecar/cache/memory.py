"""The in-memory tier: an LRU bounded in entries and in bytes."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from rampart_common.sidecar_settings import MemoryCacheSettings

from .backend import Stored
from .policy import path_of_key

__all__ = ["MemoryBackend"]


class MemoryBackend:
    name = "memory"
    available = True

    def __init__(
        self, settings: MemoryCacheSettings, clock: Callable[[], float] = time.time
    ) -> None:
        self._max_entries: int = settings.max_entries  # typed: compiled, settings are Any
        self._max_bytes: int = settings.max_bytes
        self._clock = clock
        self._values: OrderedDict[str, Stored] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._values)

    async def get(self, key: str) -> Stored | None:
        value = self._values.get(key)
        if value is None:
            return None
        if self._clock() >= value.stale_until:
            self._discard(key)
            return None
        self._values.move_to_end(key)
        return value

    async def set(self, key: str, value: Stored) -> None:
        self._discard(key)
        if value.size > self._max_bytes:
            return
        self._values[key] = value
        self.bytes += value.size
        while len(self._values) > self._max_entries or self.bytes > self._max_bytes:
            _, evicted = self._values.popitem(last=False)
            self.bytes -= evicted.size

    async def invalidate(self, path_prefix: str | None = None, path: str | None = None) -> int:
        return self.invalidate_now(path_prefix, path)

    def invalidate_now(self, path_prefix: str | None = None, path: str | None = None) -> int:
        doomed = [key for key in self._values if _matches(key, path_prefix, path)]
        for key in doomed:
            self._discard(key)
        return len(doomed)

    def forget(self, keys: list[str]) -> None:
        for key in keys:
            self._discard(key)

    def clear(self) -> None:
        self._values.clear()
        self.bytes = 0

    def stats(self) -> dict[str, float | int | str | bool]:
        return {"entries": len(self._values), "bytes": self.bytes, "state": "up"}

    def _discard(self, key: str) -> None:
        value = self._values.pop(key, None)
        if value is not None:
            self.bytes -= value.size


def _matches(key: str, path_prefix: str | None, path: str | None) -> bool:
    if path_prefix is None and path is None:
        return True
    key_path = path_of_key(key)
    if path is not None:
        return key_path == path
    assert path_prefix is not None
    return key_path.startswith(path_prefix)
