"""The response cache as the proxy sees it: lookup, coalescing, storing, stale-if-error.

Every response to a GET or HEAD says what the cache did in ``X-Rampart-Cache``:

  HIT     answered from the cache (or from a concurrent identical request's answer);
          a 304 when the request's own If-None-Match or If-Modified-Since matches
  REVALIDATED  a stored entry went stale (or the request asked for no-cache) and
          the upstream answered the sidecar's conditional request with 304: the
          entry, its fields updated, answered
  MISS    went to the upstream (and was stored if the response allowed it)
  STALE   the upstream failed, timed out or the breaker was open, and an expired
          entry still inside its stale-if-error window answered instead
  BYPASS  the request may not use the cache (``no-store``, a range request, an
          unsafe method)

An unsafe request (POST, PUT, DELETE, PATCH...) answered with a 2xx or 3xx
invalidates what is stored for its target and for the same-host targets its
``Location`` and ``Content-Location`` name (RFC 9111 section 4.4), in every
tier and, through Redis, on every replica.

The request's own Cache-Control is obeyed (``max-age``, ``min-fresh``,
``max-stale``, ``only-if-cached``, ``no-cache``), and so is the response's:
``must-revalidate``, ``proxy-revalidate``, ``s-maxage`` and ``no-cache`` forbid
answering stale, stale-if-error included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from multidict import CIMultiDict, CIMultiDictProxy

from rampart_common.sidecar_settings import CacheSettings

from ..headers import ENCODING, ResponseHead, end_to_end, has
from ..messages import Request, Response, StreamResponse
from ..metrics import Recorder
from .entry import CacheEntry
from .policy import (
    NEVER_STORED,
    SAFE_METHODS,
    CacheControl,
    RequestPlan,
    Storage,
    apparent_age,
    default_ttl_for,
    has_validator,
    invalidated_targets,
    parse_http_date,
    plan_plain_request,
    plan_request,
    primary_key,
    storage,
    variant_key,
)
from .tiered import TieredCache

if TYPE_CHECKING:
    from ..proxy import Exchange, ResponseHook
    from ..upstream import UpstreamResponse

__all__ = ["ResponseCache"]

log = logging.getLogger("rampart.cache")

ERROR_STATUSES: Final = frozenset({500, 502, 503, 504})
RESULTS: Final = ("HIT", "MISS", "STALE", "BYPASS", "REVALIDATED")
# Fields a 304 carries from the entry it stands for (RFC 9110 section 15.4.5).
_NOT_MODIFIED_FIELDS: Final = (
    "cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "vary",
)
# Fields a 304 from the upstream does not update in the stored entry (RFC 9111 section 3.2).
_NOT_UPDATED: Final = frozenset({"content-length"})
# How long an entry with a validator is kept once stale, to be revalidated rather than refetched.
_REVALIDATION_KEEP: Final = 600.0
# After a response that may not be stored, requests for its key go straight upstream
# this long, no lookup, no coalescing, no storing (Varnish's hit-for-pass): waiting
# on a leader whose answer cannot be shared would only delay them, and the work to
# find that out again would cost every request. Remembered for this many keys at most.
_PASS_FOR: Final = 60.0
_MAX_PASSES: Final = 10_000
# Per-response or per-hop fields that must not be replayed from the cache.
_NOT_STORED: Final = frozenset({"age", "x-request-id", "x-rampart-cache", "set-cookie"})
# cache.setCookie: store keeps the cookie with the entry, for every hit to hand out.
_NOT_STORED_BUT_COOKIES: Final = _NOT_STORED - {"set-cookie"}


def _not_stored(settings: CacheSettings) -> frozenset[str]:
    return _NOT_STORED_BUT_COOKIES if settings.set_cookie == "store" else _NOT_STORED


_STATS_INTERVAL: Final = 10.0
# Background revalidations (stale-while-revalidate) in flight at most, when the proxy has
# no concurrency limit to take a bound from (``revalidation_limit``). Each distinct stale
# key a client asks for would otherwise start one more upstream request no client waits
# for: a client asking for many distinct stale URLs at once must not turn into as many
# concurrent requests to the upstream. 16 refreshes a burst of popular entries expiring
# together within a few upstream round trips; past it the stale answer is still served
# (stale-while-revalidate allows it) and a later request for the key refreshes it.
_MAX_REVALIDATING: Final = 16

Forward = Callable[
    [Request, "Exchange", "ResponseHook | None"], Awaitable[Response | StreamResponse]
]
# What a background revalidation does with the upstream's answer (``_StoreHook.refresh``).
Consume = Callable[["UpstreamResponse"], Awaitable[None]]
# A request the sidecar makes itself (``Proxy.fetch``): its upstream answer goes to the
# Consume given; False when there was none (no free concurrency slot, breaker open, failed).
Fetch = Callable[[Request, bytes, Consume], Awaitable[bool]]


def revalidation_limit(max_in_flight: int) -> int:
    """Background revalidations in flight at most, for the proxy's ``concurrency.maxInFlight``
    (0: no limit). They take concurrency slots like any request; half the limit at most,
    rounded down, so that however many stale keys a client asks for, the other half
    stays the clients' (with one slot, none: a stale entry is then refreshed by the
    request that finds it past its stale-while-revalidate window).

    >>> revalidation_limit(0), revalidation_limit(1), revalidation_limit(100)
    (16, 0, 50)
    """
    if max_in_flight > 0:
        return max_in_flight // 2
    return _MAX_REVALIDATING


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
        # The one count of each result, for /metrics and /cache/stats alike.
        self._results = {r: recorder.cache_requests.labels(r.lower()) for r in RESULTS}
        self._flights: dict[str, asyncio.Future[_Shared | None]] = {}
        self._stats_task: asyncio.Task[None] | None = None
        self.fetch: Fetch | None = None  # set by revalidate_with: background revalidation
        self.max_revalidating = _MAX_REVALIDATING  # len(_revalidating) at most
        self.revalidations_skipped = 0  # not started: max_revalidating were in flight
        self._revalidating: dict[str, asyncio.Task[None]] = {}
        self._passes: OrderedDict[int, float] = OrderedDict()  # hash(key) -> until (clock)

    def revalidate_with(self, fetch: Fetch, max_in_flight: int) -> None:
        """Refresh stale-while-revalidate entries in the background with ``fetch``, at most
        ``revalidation_limit(max_in_flight)`` at a time (``concurrency.maxInFlight``)."""
        self.fetch = fetch
        self.max_revalidating = revalidation_limit(max_in_flight)

    async def start(self) -> None:
        await self.tiers.start()
        self._stats_task = asyncio.get_running_loop().create_task(self._refresh_stats())

    async def close(self) -> None:
        for task in list(self._revalidating.values()):
            task.cancel()
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

    async def serve(  # noqa: C901 - RFC 9111's request-side decisions, in the order the RFC gives them
        self, request: Request, exchange: Exchange, forward: Forward
    ) -> Response | StreamResponse:
        if request.method not in SAFE_METHODS:
            self._count(exchange, "BYPASS")
            watcher = _InvalidationHook()
            response = await forward(request, exchange, watcher)
            targets = invalidated_targets(
                request.host, request.target, watcher.status, watcher.locations
            )
            if targets:
                host = request.host
                self.tiers.forget(
                    [
                        primary_key(method, host, target)
                        for target in targets
                        for method in ("GET", "HEAD")
                    ]
                )
            return response
        # Without a Cache-Control, Pragma, Range or conditional field, nothing to decode.
        if request.head.cache_fields:
            plan = plan_request(request.method, request.headers)
        else:
            plan = plan_plain_request(request.method)
        if not plan.store and not plan.lookup:
            self._count(exchange, "BYPASS")
            return await forward(request, exchange, None)
        target = request.target
        key = primary_key(request.method, request.host, target)
        if self._passes and plan.store and not plan.only_if_cached and self._passing(hash(key)):
            # Its last answer could not be stored: no lookup, no waiting on others, and
            # for the marker's while, no storing either (Varnish's hit-for-pass).
            self._count(exchange, "MISS")
            return await forward(request, exchange, None)
        stale: CacheEntry | None = None
        leading: asyncio.Future[_Shared | None] | None = None
        found = await self.tiers.find(key, lambda: request.headers)
        if found is not None:
            entry, tier = found
            if plan.lookup and self._usable(plan, entry):
                self.tiers.hits[tier] += 1
                return self._answer(request, exchange, entry, "HIT")
            if plan.lookup and self._while_revalidating(plan, entry):
                # stale-while-revalidate (RFC 5861): this answer now, a fresh one next time.
                self._revalidate_soon(key, request, exchange, entry)
                return self._answer(request, exchange, entry, "STALE")
            stale = entry  # to revalidate, or to answer for a failing upstream
        if plan.only_if_cached:
            # RFC 9111 section 5.2.1.7: nothing stored will do, and the upstream is not asked.
            self._count(exchange, "MISS")
            return self._only_if_cached(exchange)
        if not plan.store:  # a range nothing stored could answer: the upstream's, unstored
            self._count(exchange, "BYPASS")
            return await forward(request, exchange, None)
        if plan.lookup:
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
            if hook.refreshed is not None:
                await hook.keep(hook.refreshed)
        finally:
            if leading is not None:
                self._flights.pop(key, None)
                leading.set_result(hook.shared)
        if hook.served_stale or hook.refreshed is not None:
            return response
        if (
            stale is not None
            and stale.stale_allowed
            and not response.prepared
            and response.status in ERROR_STATUSES
            and "X-Rampart-Reason" in response.headers
            and self.clock() < stale.usable_for_errors_until
        ):
            # The sidecar itself refused (breaker open, timeout, no connection).
            return self._answer(request, exchange, stale, "STALE")
        self._count(exchange, "MISS")
        return response

    def _passing(self, marker: int) -> bool:
        until = self._passes.get(marker)
        if until is None:
            return False
        if self.clock() < until:
            return True
        del self._passes[marker]
        return False

    def mark_pass(self, key: str) -> None:
        # Kept by the key's hash, not the key (a client chooses keys, up to 8 KiB each):
        # 10,000 markers stay small, and a collision only sends a request upstream.
        passes = self._passes
        marker = hash(key)
        known = marker in passes
        passes[marker] = self.clock() + _PASS_FOR
        if known:
            passes.move_to_end(marker)
            return
        if len(passes) > _MAX_PASSES:
            passes.popitem(last=False)
        self.tiers.memory.forget([key])  # a stored answer would now hide the new one's rules

    def unmark_pass(self, key: str) -> None:
        if self._passes:
            self._passes.pop(hash(key), None)

    def _usable(self, plan: RequestPlan, entry: CacheEntry) -> bool:
        now = self.clock()
        return plan.accepts(entry.age(now), entry.fresh_until - now, entry.stale_allowed)

    def _while_revalidating(self, plan: RequestPlan, entry: CacheEntry) -> bool:
        if self.fetch is None or not entry.stale_allowed:
            return False
        now = self.clock()
        if plan.max_age is not None and entry.age(now) > plan.max_age:
            return False
        window = _directive_seconds(entry, "stale-while-revalidate")
        return window is not None and now - entry.fresh_until <= window

    def _revalidate_soon(
        self, key: str, request: Request, exchange: Exchange, entry: CacheEntry
    ) -> None:
        revalidating = self._revalidating
        if key in revalidating:
            return  # one background revalidation per entry at a time
        if len(revalidating) >= self.max_revalidating:
            # At the cap: the stale answer goes out all the same, and nothing is kept
            # for later; the next request for this key tries again.
            self.revalidations_skipped += 1
            return
        task = asyncio.get_running_loop().create_task(
            self._revalidate(key, request, exchange, entry)
        )
        revalidating[key] = task
        task.add_done_callback(lambda _: self._revalidating.pop(key, None))

    async def _revalidate(
        self, key: str, request: Request, exchange: Exchange, entry: CacheEntry
    ) -> None:
        assert self.fetch is not None
        hook = _StoreHook(self, key, request.target, request, exchange, entry)
        try:
            # False when no request went out or none came back: the stale entry stays.
            await self.fetch(request, hook.extra_fields, hook.refresh)
        except Exception:  # never let a background refresh fail loudly a second time
            log.warning("background revalidation failed", exc_info=True)

    def _only_if_cached(self, exchange: Exchange) -> Response:
        exchange.status = 504
        exchange.reason = "only-if-cached"
        headers = CIMultiDict(
            {
                "Content-Type": "text/plain; charset=utf-8",
                "X-Rampart-Reason": "only-if-cached",
                "X-Request-ID": exchange.request_id,
                "X-Rampart-Cache": "MISS",
            }
        )
        return Response(504, headers, b"only-if-cached\n")

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
        own = b"Age: %d\r\nX-Rampart-Cache: %s\r\n%s" % (
            entry.age(self.clock()),
            result.encode(),
            exchange.id_field,
        )
        head = entry.head
        exchange.status = entry.status
        self._count(exchange, result)
        if request.head.cache_fields:
            if _not_modified(request, entry):
                exchange.status = 304
                return Response(304, None, b"", relayed=_not_modified_head(entry), own=own)
            ranged = _ranged(request, entry)
            if ranged is not None:
                status, content_range, body = ranged
                exchange.status = status
                ranges = CIMultiDict({"Content-Range": content_range})
                return Response(status, ranges, body, relayed=head, own=own)
        if request.method == "HEAD":
            # The length the body would have; for a GET it is computed from the body sent.
            headers = None
            if head.content_length is not None:
                headers = CIMultiDict({"Content-Length": str(head.content_length)})
            return Response(entry.status, headers, b"", relayed=head, own=own)
        return Response(entry.status, None, entry.body, relayed=head, own=own)

    def _count(self, exchange: Exchange, result: str) -> None:
        exchange.cache_status = result
        self._results[result].inc()

    # -- admin --------------------------------------------------------------

    async def stats(self) -> dict[str, object]:
        await self.tiers.refresh_stats()
        counts = {result: series.value for result, series in self._results.items()}
        lookups = counts["HIT"] + counts["MISS"] + counts["STALE"]
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
            "requests": {k.lower(): v for k, v in counts.items()},
            "hitRatio": round(counts["HIT"] / lookups, 4) if lookups else None,
            "tiers": tiers,
            "revalidations": {
                "inFlight": len(self._revalidating),
                "limit": self.max_revalidating,
                "skipped": self.revalidations_skipped,
            },
        }


class _InvalidationHook:
    """Watches an unsafe request's upstream answer for what it invalidates (``ResponseHook``)."""

    max_body = 0
    extra_fields = b""

    def __init__(self) -> None:
        self.status = 0  # stays 0 when the sidecar answered itself: nothing changed upstream
        self.locations: list[str] = []

    def substitute(self, upstream: UpstreamResponse) -> Response | None:
        return None

    def storable(self, upstream: UpstreamResponse) -> bool:
        self.status = status = upstream.status
        if 200 <= status < 400:  # only then does it invalidate: read the fields raw
            self.locations = [
                value.decode(*ENCODING)
                for name, value in upstream.fields
                if name.lower() in (b"location", b"content-location")
            ]
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
        self.max_body: int = cache.settings.max_body_bytes
        self.served_stale = False
        self.shared: _Shared | None = None
        self.refreshed: CacheEntry | None = None  # the entry a 304 brought up to date
        self._storage: Storage | None = None
        self.extra_fields = b""
        self._validating = False
        if stale is not None and not _has_conditionals(request):
            # Revalidate (RFC 9111 section 4.3.1) rather than fetch the whole body again.
            validators = ""
            etag = stale.field("ETag")
            if etag is not None:
                validators += f"If-None-Match: {etag}\r\n"
            modified = stale.field("Last-Modified")
            if modified is not None:
                validators += f"If-Modified-Since: {modified}\r\n"
            self.extra_fields = validators.encode(*ENCODING)
            self._validating = bool(validators)

    def substitute(self, upstream: UpstreamResponse) -> Response | None:
        """The stored entry instead of this upstream answer, when one may stand in."""
        status = upstream.status
        stale = self.stale
        if stale is None:
            return None
        if status == 304 and self._validating:
            refreshed = self.refreshed_by(upstream)
            self.refreshed = refreshed
            return self.cache._answer(self.request, self.exchange, refreshed, "REVALIDATED")
        if (
            status in ERROR_STATUSES
            and stale.stale_allowed
            and self.cache.clock() < stale.usable_for_errors_until
        ):
            self.served_stale = True
            return self.cache._answer(self.request, self.exchange, stale, "STALE")
        return None

    async def refresh(self, upstream: UpstreamResponse) -> None:
        """Keep what a background revalidation brought: the entry a 304 refreshed, or the
        new response if it may be stored. The caller releases ``upstream``."""
        try:
            if upstream.status == 304 and self.extra_fields:
                await self.keep(self.refreshed_by(upstream))
            elif self.storable(upstream):
                # Bounded: an upstream streaming without end must not fill memory here.
                settings = self.cache.settings
                limit, timeout = settings.max_body_bytes, settings.coalesce_timeout
                body, complete = await upstream.read_up_to(limit, timeout)
                if complete:
                    await self.store(upstream, body)
        except (TimeoutError, OSError):
            pass  # the stale entry stays until its window ends

    def refreshed_by(self, upstream: UpstreamResponse) -> CacheEntry:
        """The stored entry with the 304's fields in place of its own (RFC 9111 section 3.2)."""
        stale = self.stale
        assert stale is not None
        updates = end_to_end(upstream.headers, _not_stored(self.cache.settings))
        replaced = {name.lower() for name in updates} - _NOT_UPDATED
        pairs = [(n, v) for n, v in stale.header_pairs() if n.lower() not in replaced]
        pairs += [(n, v) for n, v in updates.items() if n.lower() in replaced]
        headers = CIMultiDictProxy(CIMultiDict(pairs))
        now = self.cache.clock()
        ttl = default_ttl_for(self.cache.settings, self.request.path)
        cookies = self.cache.settings.set_cookie != "pass"
        decided = storage(headers, self.request.headers, stale.status, ttl, now, cookies)
        return self._entry(
            stale.status,
            headers,
            stale.body,
            decided or Storage(0.0, CacheControl({}), False),
            now,
            apparent_age(upstream.headers, now),
        )

    async def keep(self, entry: CacheEntry) -> None:
        """Store an entry a revalidation refreshed, under the key the stale one had."""
        if entry.stale_until <= self.cache.clock():
            return
        headers = self.request.headers
        variant = await self.cache.tiers.store(self.key, headers, entry, _vary_of(entry))
        self.shared = _Shared(entry, _vary_of(entry), variant)

    def storable(self, upstream: UpstreamResponse) -> bool:
        length = upstream.content_length
        if length is not None and length > self.max_body:
            return False
        authorized = self.request.head.authorization
        cookies = self.cache.settings.set_cookie != "pass"
        if _never_stored(upstream.head, authorized, cookies):
            decided = None  # decided from the raw fields, nothing decoded
        else:
            ttl = default_ttl_for(self.cache.settings, self.request.path)
            now = self.cache.clock()
            headers = upstream.headers
            decided = storage(headers, self.request.headers, upstream.status, ttl, now, cookies)
        if decided is None:
            # Remembered only for what the resource said, not this request (its
            # credentials, its own conditionals' 304) nor a passing error.
            status = upstream.status
            if not authorized and 200 <= status < 500 and status not in NEVER_STORED:
                self.cache.mark_pass(self.key)
            return False
        self.cache.unmark_pass(self.key)
        self._storage = decided
        return True

    async def store(self, upstream: UpstreamResponse, body: bytes) -> None:
        if len(body) > self.max_body or self._storage is None:  # unknown length, too large
            return
        now = self.cache.clock()
        headers = CIMultiDictProxy(end_to_end(upstream.headers, _not_stored(self.cache.settings)))
        age = apparent_age(upstream.headers, now)
        entry = self._entry(upstream.status, headers, body, self._storage, now, age)
        if entry.stale_until <= now:
            return
        vary = _vary_of(entry)
        variant = await self.cache.tiers.store(self.key, self.request.headers, entry, vary)
        self.shared = _Shared(entry, vary, variant)

    def _entry(
        self,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        decided: Storage,
        now: float,
        age: float,
    ) -> CacheEntry:
        """``age``: how old the response was on arrival (``policy.apparent_age``)."""
        fresh_until = now + decided.lifetime - age
        window = decided.control.seconds("stale-if-error")
        if window is None:
            window = int(self.cache.settings.stale_if_error)
        error_until = fresh_until + window if decided.stale_allowed else fresh_until
        keep = _REVALIDATION_KEEP if has_validator(headers) else 0.0
        if decided.stale_allowed:
            keep = max(keep, decided.control.seconds("stale-while-revalidate") or 0)
        return CacheEntry(
            status=status,
            headers=tuple((n, v) for n, v in headers.items() if n.lower() != "age"),
            body=body,
            stored_at=now,
            fresh_until=fresh_until,
            stale_until=max(error_until, fresh_until + keep),
            initial_age=age,
            path=self.target,
            error_until=error_until,
            stale_allowed=decided.stale_allowed,
        )


def _never_stored(head: ResponseHead, authorization: bool, cookies: bool) -> bool:
    """The refusals a response's raw fields decide: ``Set-Cookie`` (unless ``cookies``),
    ``no-store``, ``private``, an authorized request without permission to share. Errs
    only towards "maybe": ``storage()`` has the last word on everything else."""
    if head.set_cookie and not cookies:
        return True
    if head.cdn_cache_control:
        return False  # CDN-Cache-Control may override any of the below
    control = head.cache_control
    if has(control, b"private") or (
        has(control, b"no-store") and not has(control, b"must-understand")
    ):
        return True
    return authorization and not (
        has(control, b"public") or has(control, b"s-maxage") or has(control, b"must-revalidate")
    )


def _directive_seconds(entry: CacheEntry, name: str) -> int | None:
    """A delta-seconds directive of the entry's own Cache-Control, read when needed."""
    stored = [value for field, value in entry.header_pairs() if field.lower() == "cache-control"]
    return CacheControl.parse(stored).seconds(name) if stored else None


def _vary_of(entry: CacheEntry) -> tuple[str, ...]:
    return tuple(
        sorted(
            {
                name.strip().lower()
                for stored, value in entry.header_pairs()
                if stored.lower() == "vary"
                for name in value.split(",")
                if name.strip()
            }
        )
    )


_CONDITIONALS: Final = (
    "If-None-Match",
    "If-Modified-Since",
    "If-Match",
    "If-Unmodified-Since",
    "If-Range",
)


def _has_conditionals(request: Request) -> bool:
    if not request.head.cache_fields:
        return False
    headers = request.headers
    return any(name in headers for name in _CONDITIONALS)


def _not_modified(request: Request, entry: CacheEntry) -> bool:
    """Whether the request's If-None-Match or If-Modified-Since says it has this entry
    already (RFC 9110 section 13.1, evaluated by a cache as section 4.3.2 of RFC 9111)."""
    if not 200 <= entry.status < 300 or request.method not in ("GET", "HEAD"):
        return False
    headers = request.headers
    if "If-None-Match" in headers:
        etag = entry.field("ETag")
        if etag is None:
            return False
        wanted = [
            tag.strip() for value in headers.getall("If-None-Match") for tag in value.split(",")
        ]
        return "*" in wanted or _weak(etag) in {_weak(tag) for tag in wanted}
    if "If-Modified-Since" in headers:
        since = parse_http_date(headers["If-Modified-Since"])
        if since is None:
            return False
        stamp = entry.field("Last-Modified") or entry.field("Date")
        modified = parse_http_date(stamp) if stamp else None
        if modified is None:
            modified = entry.stored_at
        return modified <= since
    return False


_RANGE_SPEC: Final = re.compile(r"bytes=([0-9]*)-([0-9]*)")


def _ranged(request: Request, entry: CacheEntry) -> tuple[int, str, bytes] | None:
    """A single byte range of a whole stored 200 (RFC 9110 section 14): 206 with the
    bytes, or 416 when none of them exist; None to answer with the whole entry
    (no Range, several ranges, a syntax this does not serve, an If-Range that
    does not match)."""
    if entry.status != 200 or request.method != "GET":
        return None
    headers = request.headers
    wanted = headers.get("Range")
    if wanted is None:
        return None
    if "If-Range" in headers:
        validator = headers["If-Range"].strip()
        etag = entry.field("ETag")
        strong = etag is not None and not etag.startswith("W/") and validator == etag
        if not strong and validator != entry.field("Last-Modified"):
            return None
    match = _RANGE_SPEC.fullmatch(wanted.strip())
    if match is None:
        return None
    first, last = match.groups()
    size = len(entry.body)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None  # invalid: ignored, the whole entry answers
    elif last:
        start, end = max(size - int(last), 0), size - 1
    else:
        return None
    if start >= size or end < start:
        return 416, f"bytes */{size}", b""
    return 206, f"bytes {start}-{end}/{size}", entry.body[start : end + 1]


def _weak(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def _not_modified_head(entry: CacheEntry) -> ResponseHead:
    fields = [
        (name.encode(*ENCODING), value.encode(*ENCODING))
        for name, value in entry.header_pairs()
        if name.lower() in _NOT_MODIFIED_FIELDS
    ]
    return ResponseHead(fields)
