"""Memory in front of Redis: the one place that knows there are two tiers.

An invalidation (an unsafe request's answer, or ``DELETE /cache``) deletes in
both tiers here and is published on Redis to every other replica, which drops
its own memory copies: an entry invalidated by one replica is not served by
another from its memory tier. A replica that was not subscribed for a while
(Redis down) cannot know what it missed, so it empties its memory tier when
it subscribes again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from secrets import token_hex

from multidict import CIMultiDictProxy

from rampart_common.sidecar_settings import CacheSettings

from ..metrics import Recorder
from .entry import CacheEntry, VaryMarker
from .memory import MemoryBackend
from .policy import variant_key
from .redis import RedisBackend

__all__ = ["TieredCache"]

REDIS_URL_ENV = "RAMPART_CACHE_REDIS_URL"


class TieredCache:
    def __init__(
        self,
        settings: CacheSettings,
        recorder: Recorder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.memory = MemoryBackend(settings.memory, clock)
        self.recorder = recorder
        self._clock = clock
        url = settings.redis.url or os.environ.get(REDIS_URL_ENV)
        self.redis: RedisBackend | None = None
        if url:
            self.redis = RedisBackend(
                settings.redis,
                url,
                on_state=lambda up: recorder.cache_backend_up.labels("redis").set(int(up)),
                on_error=recorder.cache_backend_errors.labels("redis").inc,
                clock=clock,
                on_invalidation=self._invalidated_elsewhere,
                cookies=settings.set_cookie == "store",
            )
            recorder.cache_backend_up.labels("redis").set(0)
        recorder.cache_backend_up.labels("memory").set(1)
        recorder.cache_entries.labels("memory").set_function(lambda: len(self.memory))
        recorder.cache_bytes.labels("memory").set_function(lambda: self.memory.bytes)
        self.hits = {"memory": 0, "redis": 0}

    async def start(self) -> None:
        if self.redis is not None:
            await self.redis.start()

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()

    async def refresh_stats(self) -> None:
        if self.redis is not None:
            await self.redis.refresh_stats()
            info = self.redis.stats()
            self.recorder.cache_entries.labels("redis").set(float(info["entries"]))
            self.recorder.cache_bytes.labels("redis").set(float(info["bytes"]))

    async def _get(self, key: str) -> tuple[CacheEntry | VaryMarker, str] | None:
        value = await self.memory.get(key)
        if value is not None:
            return value, "memory"
        if self.redis is None:
            return None
        value = await self.redis.get(key)
        if value is None or self._clock() >= value.stale_until:
            return None
        await self.memory.set(key, value)  # promote: the next hit stays local
        return value, "redis"

    async def find(
        self, primary: str, request_headers: Callable[[], CIMultiDictProxy[str]]
    ) -> tuple[CacheEntry, str] | None:
        """The entry for this request, fresh or stale, and the tier that had it.

        ``request_headers`` is called only for a response that varies: most
        requests never need their fields decoded.
        """
        found = await self._get(primary)
        if found is not None and isinstance(found[0], VaryMarker):
            marker = found[0]
            key = variant_key(primary, marker.headers, request_headers(), marker.generation)
            found = await self._get(key)
        if found is None or not isinstance(found[0], CacheEntry):
            return None
        return found[0], found[1]

    async def store(
        self,
        primary: str,
        request_headers: CIMultiDictProxy[str],
        entry: CacheEntry,
        vary: tuple[str, ...],
    ) -> str:
        """Store in both tiers; returns the key the entry went under."""
        key = primary
        if vary:
            # The variants already stored stay reachable when the marker is the same.
            found = await self._get(primary)
            current = found[0] if found is not None else None
            if isinstance(current, VaryMarker) and current.headers == vary:
                generation = current.generation
            else:
                generation = token_hex(8)
            stale_until = max(entry.stale_until, getattr(current, "stale_until", 0.0))
            marker = VaryMarker(vary, stale_until, entry.path, generation)
            await self._set(primary, marker)
            key = variant_key(primary, vary, request_headers, generation)
        await self._set(key, entry)
        return key

    async def _set(self, key: str, value: CacheEntry | VaryMarker) -> None:
        await self.memory.set(key, value)
        if self.redis is not None:
            self.redis.set_soon(key, value)

    async def invalidate(self, path_prefix: str | None = None, path: str | None = None) -> int:
        deleted = await self.memory.invalidate(path_prefix, path)
        if self.redis is not None:
            deleted += await self.redis.invalidate(path_prefix, path)
            await self.redis.publish({"path_prefix": path_prefix, "path": path})
        return deleted

    def forget(self, primaries: list[str]) -> None:
        """Delete these primary keys everywhere: without its primary key (an entry, or the
        ``VaryMarker`` that leads to the variants) nothing stored under it is found."""
        self.memory.forget(primaries)
        if self.redis is not None:
            # After the answer, as writes are: the request need not wait for two round trips.
            self.redis.forget_soon(primaries)

    def _invalidated_elsewhere(self, message: dict[str, object] | None) -> None:
        """What another replica invalidated (None: anything may have been missed)."""
        if message is None:
            self.memory.clear()
            return
        keys = message.get("keys")
        if isinstance(keys, list):
            self.memory.forget([str(key) for key in keys])
            return
        prefix, path = message.get("path_prefix"), message.get("path")
        self.memory.invalidate_now(
            prefix if isinstance(prefix, str) else None, path if isinstance(path, str) else None
        )
