"""The Redis tier, shared by every replica of a service.

It never fails a request: every command has a short timeout, and the first
error marks Redis down, after which it is skipped (costing nothing) while a
background task pings it with backoff (0.1 s doubling to 2 s) and brings it
back. Writes happen after the response is sent, and are dropped rather than
queued without bound when Redis falls behind.

Invalidations are published on ``<keyPrefix>invalidate`` and every replica
listens on a connection of its own (a subscription blocks its connection),
re-subscribing with the same backoff when it breaks; ``on_invalidation`` gets
each message, and None each time the subscription (re)starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from rampart_common.sidecar_settings import RedisCacheSettings

from .backend import Stored
from .entry import CacheEntry
from .memory import _matches

__all__ = ["RedisBackend"]

log = logging.getLogger("rampart.cache.redis")

_RECONNECT_FIRST = 0.1
_RECONNECT_MAX = 2.0
_MAX_PENDING_WRITES = 256
_FAILURES = (RedisError, OSError, TimeoutError)


class RedisBackend:
    name = "redis"

    def __init__(
        self,
        settings: RedisCacheSettings,
        url: str,
        on_state: Callable[[bool], None] = lambda up: None,
        on_error: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        on_invalidation: Callable[[dict[str, object] | None], None] = lambda message: None,
        cookies: bool = True,
    ) -> None:
        self._timeout = settings.timeout
        # False: Set-Cookie is dropped from what is read (cache.setCookie is not
        # store here, but a sidecar sharing the Redis, a canary say, may store it).
        self._cookies = cookies
        self._prefix = settings.key_prefix
        self._channel = settings.key_prefix + "invalidate"
        self._on_invalidation = on_invalidation
        # No socket timeout: a subscription waits for messages as long as it must.
        self._subscriber: Redis = Redis.from_url(
            url, socket_connect_timeout=settings.timeout, retry=Retry(NoBackoff(), 0)
        )
        self._listening: asyncio.Task[None] | None = None
        self._on_state = on_state
        self._on_error = on_error
        self._clock = clock
        self._pool = BlockingConnectionPool.from_url(
            url,
            max_connections=settings.max_connections,
            timeout=settings.timeout,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._client = Redis(connection_pool=self._pool)
        self._up = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._info: dict[str, int] = {"entries": 0, "bytes": 0}

    @property
    def available(self) -> bool:
        return self._up

    async def start(self) -> None:
        if await self._ping():
            self._mark(up=True)
        else:
            self._fail("unreachable at start")
        self._listening = asyncio.get_running_loop().create_task(self._listen())

    async def close(self) -> None:
        for task in (self._reconnecting, self._listening):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(*_FAILURES):
            await self._subscriber.aclose()
        if self._writes:
            await asyncio.wait(self._writes, timeout=1.0)
        await self._client.aclose()
        await self._pool.disconnect()

    async def get(self, key: str) -> Stored | None:
        if not self._up:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                data = await self._client.get(self._prefix + key)
        except _FAILURES as error:
            self._fail(error)
            return None
        if not isinstance(data, bytes):  # None: a miss (no decode_responses, so never str)
            return None
        try:
            return CacheEntry.decode(data, self._cookies)
        except ValueError:
            self._on_error()  # a foreign or corrupt value: a miss, not a failure
            return None

    async def set(self, key: str, value: Stored) -> None:
        if not self._up:
            return
        ttl_ms = int((value.stale_until - self._clock()) * 1000)
        if ttl_ms <= 0:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.set(self._prefix + key, value.encode(), px=ttl_ms)
        except _FAILURES as error:
            self._fail(error)

    def set_soon(self, key: str, value: Stored) -> None:
        """Write in the background; dropped when Redis is down or too far behind."""
        if not self._up or len(self._writes) >= _MAX_PENDING_WRITES:
            return
        task = asyncio.get_running_loop().create_task(self.set(key, value))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def invalidate(self, path_prefix: str | None = None, path: str | None = None) -> int:
        if not self._up:
            return 0
        deleted = 0
        batch: list[bytes] = []
        try:
            async for raw in self._client.scan_iter(
                match=_glob_escape(self._prefix) + "*", count=1000
            ):
                key = raw.decode(errors="replace")[len(self._prefix) :]
                if _matches(key, path_prefix, path):
                    batch.append(raw)
                if len(batch) >= 500:
                    deleted += await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                deleted += await self._client.unlink(*batch)
        except _FAILURES as error:
            self._fail(error)
        return deleted

    async def delete(self, keys: list[str]) -> None:
        if not self._up or not keys:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.unlink(*[self._prefix + key for key in keys])
        except _FAILURES as error:
            self._fail(error)

    def forget_soon(self, keys: list[str]) -> None:
        """Delete, then tell every replica, in the background (dropped like writes)."""
        if not self._up or len(self._writes) >= _MAX_PENDING_WRITES:
            return
        task = asyncio.get_running_loop().create_task(self._forget(keys))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _forget(self, keys: list[str]) -> None:
        await self.delete(keys)
        await self.publish({"keys": keys})

    async def publish(self, message: dict[str, object]) -> None:
        """Tell every replica (this one too, harmlessly) what was invalidated."""
        if not self._up:
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.publish(self._channel, json.dumps(message))
        except _FAILURES as error:
            self._fail(error)

    async def _listen(self) -> None:
        delay = _RECONNECT_FIRST
        while True:
            pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._on_invalidation(None)  # whatever was published meanwhile is unknown
                delay = _RECONNECT_FIRST
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._received(message)
            except _FAILURES as error:
                log.debug("invalidation subscription broke", extra={"error": str(error)})
            finally:
                with contextlib.suppress(*_FAILURES):
                    # Untyped before redis-py 8.2, typed from it: either is fine.
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX)

    def _received(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        try:
            decoded = json.loads(message["data"])
        except (ValueError, TypeError):
            self._on_error()  # not ours
            return
        if isinstance(decoded, dict):
            self._on_invalidation(decoded)

    async def refresh_stats(self) -> None:
        """DBSIZE and used memory: of the whole Redis database, so give the cache its own."""
        if not self._up:
            return
        try:
            async with asyncio.timeout(self._timeout * 4):
                entries = await self._client.dbsize()
                memory = await self._client.info("memory")
            self._info = {"entries": int(entries), "bytes": int(memory.get("used_memory", 0))}
        except _FAILURES as error:
            self._fail(error)

    def stats(self) -> dict[str, float | int | str | bool]:
        # Writes still in flight: how far behind the answers Redis is (at most
        # _MAX_PENDING_WRITES; past that, stores are dropped).
        return {
            **self._info,
            "pendingWrites": len(self._writes),
            "state": "up" if self._up else "down",
        }

    # -- health ------------------------------------------------------------

    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(max(self._timeout, 0.2)):
                return bool(await self._client.ping())
        except _FAILURES:
            return False

    def _mark(self, up: bool) -> None:
        if self._up != up:
            self._up = up
            self._on_state(up)
            log.warning("redis %s", "up" if up else "down")

    def _fail(self, error: object) -> None:
        self._on_error()
        if self._up:
            log.warning(
                "redis error; serving from memory until it answers",
                extra={"error": str(error) or type(error).__name__},
            )
        self._mark(up=False)
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        # Connections in the pool may point at a Redis that restarted: start clean. Only
        # the idle ones: closing one a command is still using breaks that command outside
        # redis-py's own errors (uvloop: RuntimeError, else AttributeError on its writer).
        # One in use that fails is disconnected by redis-py itself.
        with contextlib.suppress(*_FAILURES):
            await self._pool.disconnect(inuse_connections=False)
        delay = _RECONNECT_FIRST
        while True:
            await asyncio.sleep(delay)
            if await self._ping():
                self._mark(up=True)
                return
            delay = min(delay * 2, _RECONNECT_MAX)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
