"""The response cache as the proxy sees it: lookup, coalescing, storing, stale-if-error.

Every response to a GET or HEAD says what the cache did in ``X-Rampart-Cache``:

  HIT     answered from the cache (or from a concurrent identical request's answer)
  MISS    went to the upstream (and was stored if the response allowed it)
  STALE   the upstream failed, timed out or the breaker was open, and an expired
          entry still inside its stale-if-error window answered instead
  BYPASS  the request may not use the cache (``no-store``, a range request, an
          unsafe method)

An unsafe request (POST, PUT, DELETE, PATCH...) answered with a 2xx or 3xx
invalidates what is stored for its target and for the same-host targets its
``Location`` and ``Content-Location`` name (RFC 9111 section 4.4), in every
tier and, through Redis, on every replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

from ..config import CacheSettings
from ..headers import end_to_end
from ..messages import Request, Response, StreamResponse
from ..metrics import Recorder
from .entry import CacheEntry
from .policy import (
    SAFE_METHODS,
    CacheControl,
    default_ttl_for,
    freshness_lifetime,
    invalidated_targets,
    plan_request,
    primary_key,
    variant_key,
)
from .tiered import TieredCache

if TYPE_CHECKING:
    from ..proxy import Exchange, ResponseHook
    from ..upstream import UpstreamResponse

__all__ = ["ResponseCache"]

log = logging.getLogger("rampart.cache")

ERROR_STATUSES = frozenset({500, 502, 503, 504})
RESULTS = ("HIT", "MISS", "STALE", "BYPASS")
# Per-response or per-hop fields that must not be replayed from the cache.
_NOT_STORED = frozenset({"age", "x-request-id", "x-rampart-cache", "set-cookie"})
_STATS_INTERVAL = 10.0
_NO_FIELDS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())

Forward = Callable[
    [Request, "Exchange", "ResponseHook | None"], Awaitable[Response | StreamResponse]
]


@dataclass(frozen=True, slots=True)
class _Shared:
    """What a request that went upstream hands to identical requests that waited for it."""

    entry: CacheEntry
    vary: tuple[str, ...]
    variant: str  # the key it was stored under

    def serves(self, primary: str, headers: CIMultiDictProxy[str]) -> bool:
        key = variant_key(primary, self.vary, headers) if self.vary else primary
        return key == self.variant


class ResponseCache:
    def __init__(
        self, settings: CacheSettings, recorder: Recorder, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.tiers = TieredCache(settings, recorder, clock)
        self.clock = clock
        self.counts = dict.fromkeys(RESULTS, 0)
        self._results = {r: recorder.cache_requests.labels(r.lower()) for r in RESULTS}
        self._flights: dict[str, asyncio.Future[_Shared | None]] = {}
        self._stats_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.tiers.start()
        self._stats_task = asyncio.get_running_loop().create_task(self._refresh_stats())

    async def close(self) -> None:
        if self._stats_task is not None:
            self._stats_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stats_task
        await self.tiers.close()

    async def _refresh_stats(self) -> None:
        while True:
            await self.tiers.refresh_stats()
            await asyncio.sleep(_STATS_INTERVAL)

    # -- the request path ---------------------------------------------------

    async def serve(
        self, request: Request, exchange: Exchange, forward: Forward
    ) -> Response | StreamResponse:
        # Without a Cache-Control, Pragma or Range field the fields need no decoding.
        fields = request.headers if request.head.cache_fields else _NO_FIELDS
        if request.method not in SAFE_METHODS:
            self._count(exchange, "BYPASS")
            watcher = _InvalidationHook()
            response = await forward(request, exchange, watcher)
            targets = invalidated_targets(
                request.host, request.target, watcher.status, watcher.locations
            )
            if targets:
                host = request.host
                await self.tiers.forget(
                    [
                        primary_key(method, host, target)
                        for target in targets
                        for method in ("GET", "HEAD")
                    ]
                )
            return response
        plan = plan_request(request.method, fields)
        if not plan.store:
            self._count(exchange, "BYPASS")
            return await forward(request, exchange, None)
        target = request.target
        key = primary_key(request.method, request.host, target)
        stale: CacheEntry | None = None
        leading: asyncio.Future[_Shared | None] | None = None
        if plan.lookup:
            found = await self.tiers.find(key, lambda: request.headers)
            if found is not None:
                entry, tier = found
                if entry.is_fresh(self.clock()):
                    self.tiers.hits[tier] += 1
                    return self._answer(request, exchange, entry, "HIT")
                stale = entry
            flight = self._flights.get(key)
            if flight is not None:
                shared = await self._follow(flight)
                if shared is not None and shared.serves(key, request.headers):
                    self.tiers.hits["memory"] += 1
                    return self._answer(request, exchange, shared.entry, "HIT")
            else:
                leading = asyncio.get_running_loop().create_future()
                self._flights[key] = leading

        exchange.cache_status = "MISS"
        hook = _StoreHook(self, key, target, request, exchange, stale)
        try:
            response = await forward(request, exchange, hook)
        finally:
            if leading is not None:
                self._flights.pop(key, None)
                leading.set_result(hook.shared)
        if hook.served_stale:
            return response
        if (
            stale is not None
            and not response.prepared
            and response.status in ERROR_STATUSES
            and "X-Rampart-Reason" in response.headers
            and self.clock() < stale.stale_until
        ):
            # The sidecar itself refused (breaker open, timeout, no connection).
            return self._answer(request, exchange, stale, "STALE")
        self._count(exchange, "MISS")
        return response

    async def _follow(self, flight: asyncio.Future[_Shared | None]) -> _Shared | None:
        try:
            async with asyncio.timeout(self.settings.coalesce_timeout):
                # shield: a follower giving up must not cancel the leader's future
                return await asyncio.shield(flight)
        except TimeoutError:
            return None

    def _answer(
        self, request: Request, exchange: Exchange, entry: CacheEntry, result: str
    ) -> Response:
        # The stored fields go as encoded once (``entry.head``); these are per answer.
        own = b"Age: %d\r\nX-Rampart-Cache: %s\r\nX-Request-ID: %s\r\n" % (
            entry.age(self.clock()),
            result.encode(),
            exchange.request_id.encode(),
        )
        head = entry.head
        exchange.status = entry.status
        self._count(exchange, result)
        if request.method == "HEAD":
            # The length the body would have; for a GET it is computed from the body sent.
            headers = None
            if head.content_length is not None:
                headers = CIMultiDict({"Content-Length": str(head.content_length)})
            return Response(entry.status, headers, b"", relayed=head, own=own)
        return Response(entry.status, None, entry.body, relayed=head, own=own)

    def _count(self, exchange: Exchange, result: str) -> None:
        exchange.cache_status = result
        self.counts[result] += 1
        self._results[result].inc()

    # -- admin --------------------------------------------------------------

    async def stats(self) -> dict[str, object]:
        await self.tiers.refresh_stats()
        lookups = self.counts["HIT"] + self.counts["MISS"] + self.counts["STALE"]
        memory_hits = self.tiers.hits["memory"]
        redis_hits = self.tiers.hits["redis"]
        tiers: dict[str, dict[str, object]] = {
            "memory": {
                **self.tiers.memory.stats(),
                "hits": memory_hits,
                "misses": lookups - memory_hits,
                "hitRatio": round(memory_hits / lookups, 4) if lookups else None,
            }
        }
        if self.tiers.redis is not None:
            reached = lookups - memory_hits
            tiers["redis"] = {
                **self.tiers.redis.stats(),
                "hits": redis_hits,
                "misses": reached - redis_hits,
                "hitRatio": round(redis_hits / reached, 4) if reached else None,
            }
        return {
            "requests": {k.lower(): v for k, v in self.counts.items()},
            "hitRatio": round(self.counts["HIT"] / lookups, 4) if lookups else None,
            "tiers": tiers,
        }


class _InvalidationHook:
    """Watches an unsafe request's upstream answer for what it invalidates (``ResponseHook``)."""

    max_body = 0

    def __init__(self) -> None:
        self.status = 0  # stays 0 when the sidecar answered itself: nothing changed upstream
        self.locations: list[str] = []

    def substitute(self, status: int) -> Response | None:
        return None

    def storable(self, upstream: UpstreamResponse) -> bool:
        self.status = upstream.status
        headers = upstream.headers
        self.locations = headers.getall("Location", []) + headers.getall("Content-Location", [])
        return False

    async def store(self, upstream: UpstreamResponse, body: bytes) -> None:
        return None


class _StoreHook:
    """What the proxy asks the cache about one upstream response (``proxy.ResponseHook``)."""

    def __init__(
        self,
        cache: ResponseCache,
        key: str,
        target: str,
        request: Request,
        exchange: Exchange,
        stale: CacheEntry | None,
    ) -> None:
        self.cache = cache
        self.key = key
        self.target = target
        self.request = request
        self.exchange = exchange
        self.stale = stale
        self.max_body = cache.settings.max_body_bytes
        self.served_stale = False
        self.shared: _Shared | None = None
        self._lifetime = 0.0
        self._control = CacheControl({})

    def substitute(self, status: int) -> Response | None:
        """A stale entry instead of an upstream error, when one is still allowed."""
        if (
            status in ERROR_STATUSES
            and self.stale is not None
            and self.cache.clock() < self.stale.stale_until
        ):
            self.served_stale = True
            return self.cache._answer(self.request, self.exchange, self.stale, "STALE")
        return None

    def storable(self, upstream: UpstreamResponse) -> bool:
        length = upstream.content_length
        if length is not None and length > self.max_body:
            return False
        ttl = default_ttl_for(self.cache.settings, self.request.path)
        decided = freshness_lifetime(upstream.headers, self.request.headers, upstream.status, ttl)
        if decided is None:
            return False
        self._lifetime, self._control = decided
        return True

    async def store(self, upstream: UpstreamResponse, body: bytes) -> None:
        if len(body) > self.max_body:  # a body of unknown length turned out too large
            return
        now = self.cache.clock()
        age_header = upstream.headers.get("Age", "0")
        age = float(age_header) if age_header.isdigit() else 0.0
        fresh_until = now + self._lifetime - age
        if fresh_until <= now:
            return
        window = self._control.seconds("stale-if-error")
        if window is None:
            window = int(self.cache.settings.stale_if_error)
        entry = CacheEntry(
            status=upstream.status,
            headers=tuple(end_to_end(upstream.headers, _NOT_STORED).items()),
            body=body,
            stored_at=now,
            fresh_until=fresh_until,
            stale_until=fresh_until + window,
            initial_age=age,
            path=self.target,
        )
        vary = tuple(
            sorted(
                {
                    name.strip().lower()
                    for value in upstream.headers.getall("Vary", [])
                    for name in value.split(",")
                    if name.strip()
                }
            )
        )
        variant = await self.cache.tiers.store(self.key, self.request.headers, entry, vary)
        self.shared = _Shared(entry, vary, variant)
