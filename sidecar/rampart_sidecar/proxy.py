"""The proxy listener: every request to the application passes through ``Proxy.handle``.

The policies are applied in the order ``policies/__init__.py`` documents.
Every answer the sidecar makes itself carries ``X-Rampart-Reason``; every
answer carries ``X-Request-ID``.

Timeouts: ``timeouts.request`` (or the route's) bounds the time until the
upstream's response headers arrive, retries and backoff included. After that a
body streams as long as it keeps moving: ``timeouts.idle`` bounds each silence,
except for ``text/event-stream`` responses and WebSockets, which may be quiet
for as long as they like.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

import aiohttp
from multidict import CIMultiDict
from prometheus_client import Counter

from rampart_common.sidecar_settings import SidecarSettings

from .errors import (
    BadMessage,
    BadResponse,
    BodyTooLarge,
    ConnectFailure,
    PerTryTimeout,
    UpstreamConnectError,
    UpstreamError,
    UpstreamReset,
    UpstreamUnreadable,
)
from .headers import ENCODING, request_id
from .logs import AccessLog, redact_headers
from .messages import Request, Response, StreamResponse
from .metrics import Recorder

# From the modules, not the package: mypyc (setup.py) types a name imported
# through the uncompiled policies/__init__.py as Any, and calls it the slow way.
from .policies.breaker import BreakerState, CircuitBreaker
from .policies.concurrency import ConcurrencyLimiter
from .policies.ratelimit import RateLimiter
from .policies.retry import RetryBudget, RetryPolicy
from .policies.timeout import Route, RouteTable
from .request_body import RequestBodyStream
from .upstream import NO_BODY_STATUSES, UpstreamPool, UpstreamResponse
from .websocket import is_websocket_upgrade, relay_websocket

__all__ = ["CacheLayer", "Exchange", "Proxy", "ResponseHook", "classify_client_error"]

log = logging.getLogger("rampart.proxy")

# Bound once: compiled, a name imported from a module mypyc does not compile is a
# dict lookup at each use, a Final one a C global.
monotonic: Final = time.monotonic
# Responses up to this size are read whole and sent with one write; larger
# ones, and those of unknown length, stream.
_BUFFERED_RESPONSE_LIMIT: Final = 64 * 1024
_FORWARDED_HTTP: Final = b"X-Forwarded-Proto: http\r\n"
_CLIENT_FIELDS_KEPT: Final = 1024


class Exchange:
    """What one request did, for its access-log line and metrics.

    A plain class rather than a dataclass: compiled, its ``__init__`` is native,
    where a dataclass's is generated Python (4,700 instructions a request more,
    callgrind on bench/hot_path.py).
    """

    def __init__(
        self, method: str, path: str, route: Route, request_id: str, started: float
    ) -> None:
        self.method = method
        self.path = path
        self.route = route
        self.request_id = request_id
        # The field as it goes upstream and back to the client, encoded once.
        self.id_field = b"X-Request-ID: " + request_id.encode() + b"\r\n"
        self.started = started
        self.status = 0
        self.reason = ""  # set when the sidecar answered itself
        self.attempts = 0
        self.headers_sent = 0.0
        self.cache_status = ""  # X-Rampart-Cache, when a cache is configured
        self.body_error = ""  # why a streamed body was cut short


class ResponseHook(Protocol):
    """What the proxy asks a response cache about one upstream response."""

    max_body: int
    extra_fields: bytes  # encoded fields to add to the upstream request (validators)

    def substitute(self, upstream: UpstreamResponse) -> Response | None:
        """An answer to send instead of this upstream response, if any: a stale entry
        instead of an error, the stored entry when a revalidation answered 304."""

    def storable(self, upstream: UpstreamResponse) -> bool:
        """Whether to read the body whole so it can be stored."""

    async def store(self, upstream: UpstreamResponse, body: bytes) -> None:
        """Keep the response whose whole body is ``body``."""


class CacheLayer(Protocol):
    async def serve(
        self,
        request: Request,
        exchange: Exchange,
        forward: Callable[
            [Request, Exchange, ResponseHook | None], Awaitable[Response | StreamResponse]
        ],
    ) -> Response | StreamResponse: ...


def classify_client_error(error: BaseException) -> UpstreamError:
    """Translate an OS error from one attempt, keeping it as the cause."""
    translated: UpstreamError
    if isinstance(error, UpstreamConnectError | ConnectionRefusedError):
        translated = ConnectFailure(str(error))
    elif isinstance(error, UpstreamUnreadable):
        translated = BadResponse(str(error))
    else:
        translated = UpstreamReset(str(error) or type(error).__name__)
    translated.__cause__ = error
    return translated


class Proxy:
    def __init__(self, settings: SidecarSettings, recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder
        self.routes = RouteTable(settings.timeouts)
        self.retry = RetryPolicy(settings.retries)
        self.retry_budget = RetryBudget(settings.retries)
        self.breaker = CircuitBreaker(
            settings.circuit_breaker,
            on_change=self._on_breaker_change,
        )
        self.concurrency = ConcurrencyLimiter(settings.concurrency)
        self.rate_limiter = RateLimiter(settings.rate_limit)
        # Typed here: compiled, the settings are Any (their module is not), and an
        # attribute of a declared type is native rather than a boxed object.
        self.idle_timeout: float = float(settings.timeouts.idle)
        self.max_body: int = settings.server.max_request_body_bytes
        self.secret_headers = frozenset(h.lower() for h in settings.logging.secret_headers)
        self.access_log: bool = settings.logging.access_log
        self._access = AccessLog()
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self.cache: CacheLayer | None = None  # set by the app when spec.sidecar.cache is
        self.draining = False
        self.in_flight = 0
        self._drained: asyncio.Future[None] | None = None  # while drain() waits
        self._session: aiohttp.ClientSession | None = None  # readiness checks only
        self._pool: UpstreamPool | None = None  # every other request
        self._rejected_children: dict[str, Counter] = {}
        self._client_fields: dict[str, bytes] = {}
        self._debug = False  # DEBUG logging on: read once, in start()
        recorder.inflight.set_function(lambda: self.in_flight)
        # Read at scrape time: open turns half-open by the clock, not by an event.
        recorder.circuit_state.set_function(lambda: int(self.breaker.state))

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Read once: logging is configured before the proxy starts, and asking per
        # request ran 900 instructions of interpreted logging code.
        self._debug = log.isEnabledFor(logging.DEBUG)
        upstream = self.settings.upstream
        self._pool = UpstreamPool(upstream)
        connector = aiohttp.TCPConnector(
            limit=upstream.max_connections,
            keepalive_timeout=upstream.idle_timeout,
            ttl_dns_cache=10,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Never keep one user's cookies for the next user's request.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            # Send exactly the caller's headers: no invented User-Agent or Accept.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=upstream.connect_timeout),
            trust_env=False,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "Proxy.start() was not awaited"
        return self._session

    @property
    def pool(self) -> UpstreamPool:
        assert self._pool is not None, "Proxy.start() was not awaited"
        return self._pool

    async def close(self) -> None:
        self._access.flush()
        if self._pool is not None:
            await self._pool.close()
        if self._session is not None:
            await self._session.close()

    async def drain(self, timeout: float) -> bool:
        """Stop taking new work and wait for requests in flight; False if time ran out."""
        self.draining = True
        if self.in_flight == 0:
            return True
        self._drained = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._drained
        except TimeoutError:
            return False
        finally:
            self._drained = None
        return True

    def _on_breaker_change(self, state: BreakerState) -> None:
        log.warning("circuit breaker %s", state.name.lower().replace("_", "-"))

    # -- the request path -------------------------------------------------

    async def handle(self, request: Request) -> Response | StreamResponse:
        path = request.path
        exchange = Exchange(
            request.method,
            path,
            self.routes.match(path),
            request_id(request.head.request_id),
            monotonic(),
        )
        self.in_flight += 1
        self.retry_budget.requests_in_flight += 1
        try:
            refusal = self._refusal(request, exchange)
            if refusal is not None:
                response: Response | StreamResponse = refusal
            elif request.upgrade and is_websocket_upgrade(request):
                response = await self._websocket(request, exchange)
            elif self.cache is not None:
                response = await self.cache.serve(request, exchange, self._forward)
            else:
                response = await self._forward(request, exchange, None)
        except asyncio.CancelledError:
            exchange.status = exchange.status or 499  # the client went away
            self._finish(request, exchange)
            raise
        finally:
            self.in_flight -= 1
            self.retry_budget.requests_in_flight -= 1
            if self.in_flight == 0 and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)
        self._finish(request, exchange)
        return response

    def _refusal(self, request: Request, exchange: Exchange) -> Response | None:
        """The answer to a request refused before anything else is looked at, if it is."""
        if request.method == "CONNECT" or not request.raw_path.startswith("/"):
            return self.local(exchange, 400, "bad-request")
        if self.rate_limiter.enabled:
            wait = self.rate_limiter.check(self._client_key(request))
            if wait > 0:
                retry_after = RateLimiter.retry_after(wait)
                return self.local(exchange, 429, "rate-limited", retry_after=retry_after)
        return None

    async def _wait_for_slot(self, exchange: Exchange) -> bool:
        """A concurrency slot, waited for until the request's deadline; False if none came."""
        deadline = exchange.started + exchange.route.request_timeout
        return await self.concurrency.acquire(deadline - monotonic())

    async def _websocket(self, request: Request, exchange: Exchange) -> Response | StreamResponse:
        """A WebSocket upgrade, relayed while it lasts, in a concurrency slot."""
        if not self.concurrency.try_acquire() and not await self._wait_for_slot(exchange):
            return self.local(exchange, 503, "concurrency-limit")
        try:
            return await relay_websocket(self, request, exchange)
        finally:
            self.concurrency.release()

    async def fetch(
        self,
        request: Request,
        extra_fields: bytes,
        consume: Callable[[UpstreamResponse], Awaitable[None]],
    ) -> bool:
        """The upstream's answer to ``request`` for the sidecar itself (a cache revalidating
        in the background), handed to ``consume``; False when none was asked for or came.

        It goes through the gates a client's request does, less what only a waiting
        client justifies: a concurrency slot, held until ``consume`` returns, but only a
        free one (never queued, never waited for: that room is the clients'); nothing
        while the breaker is open, which counts the attempt like any other; no retries,
        so nothing from the retry budget; the route's timeout until the headers arrive.
        """
        concurrency = self.concurrency
        if not concurrency.try_acquire():
            return False
        try:
            route = self.routes.match(request.path)
            exchange = Exchange(request.method, request.path, route, request_id(None), monotonic())
            fields = self.upstream_fields(request, exchange) + extra_fields
            # Taken last, right before the request: nothing that may raise comes between
            # it and the try below that returns it (a half-open trial never lost).
            permit = self.breaker.acquire() if self.breaker.enabled else None
            if self.breaker.enabled and permit is None:
                return False
            started = monotonic()
            try:
                upstream = await self.pool.request(
                    request.method, request.target, fields, None, route.request_timeout
                )
            except (TimeoutError, OSError):
                self.recorder.observe_upstream(0, monotonic() - started)
                if permit is not None:
                    self.breaker.record(permit, False)
                return False
            except BaseException:
                if permit is not None:
                    self.breaker.release(permit)
                raise
            self.recorder.observe_upstream(upstream.status, monotonic() - started)
            if permit is not None:
                self.breaker.record(permit, upstream.status < 500)
            try:
                await consume(upstream)
            finally:
                upstream.release()
            return True
        finally:
            concurrency.release()

    def _client_key(self, request: Request) -> str:
        header = self.rate_limiter.header
        if header is not None:
            value = request.headers.get(header)
            if value:
                return "h:" + value
        # The address itself, the connection's own string (its hash kept from the last
        # request): no address starts with "h:", so the two kinds of key never meet.
        return request.remote or ""

    def upstream_fields(self, request: Request, exchange: Exchange) -> bytes:
        """The header fields to send upstream, encoded: the client's end-to-end ones, and ours."""
        head = request.head
        # Built as bytes: formatting str and encoding it cost twice as much per request.
        parts = [head.forwarded, exchange.id_field]
        if head.host is None:  # HTTP/1.0 clients may leave it out; the upstream may not
            parts += (b"Host: ", self.pool.authority.encode(*ENCODING), b"\r\n")
        if not head.has_forwarded_proto:
            parts.append(
                _FORWARDED_HTTP
                if request.scheme == "http"
                else b"X-Forwarded-Proto: " + request.scheme.encode() + b"\r\n"
            )
        chain = head.forwarded_for
        client = request.remote
        if chain:
            parts += (b"X-Forwarded-For: ", chain)
            if client:
                parts += (b", ", client.encode())
            parts.append(b"\r\n")
        elif client:
            parts.append(self._client_field(client))
        return b"".join(parts)

    def _client_field(self, client: str) -> bytes:
        """``X-Forwarded-For: <client>``, encoded once per address rather than per request."""
        field = self._client_fields.get(client)
        if field is None:
            if len(self._client_fields) >= _CLIENT_FIELDS_KEPT:
                self._client_fields.clear()  # bounded: the addresses are the clients'
            field = b"X-Forwarded-For: " + client.encode() + b"\r\n"
            self._client_fields[client] = field
        return field

    async def _forward(  # noqa: C901 - the request path in one compiled function: each call out costs per request
        self,
        request: Request,
        exchange: Exchange,
        hook: ResponseHook | None = None,
    ) -> Response | StreamResponse:
        """The upstream's answer to ``request``, in a concurrency slot, retried as the
        policy allows (the cache's way upstream too, with its ``hook``)."""
        # The slot is taken here, not in a coroutine of its own around this one: each
        # level of coroutine costs every request an object and two resumptions.
        if not self.concurrency.try_acquire() and not await self._wait_for_slot(exchange):
            return self.local(exchange, 503, "concurrency-limit")
        deadline = exchange.started + exchange.route.request_timeout
        holding_budget = False
        try:
            length = request.content_length
            if length is not None and length > self.max_body:
                return self.local(exchange, 413, "body-too-large")
            try:
                if request.content is None:
                    # "Content-Length: 0" goes on as such: some servers want a length on a POST.
                    body: bytes | RequestBodyStream | None = b"" if length == 0 else None
                else:
                    body = await self._request_body(request, length)
            except (TimeoutError, BodyTooLarge) as error:
                status, reason = (
                    (408, "client-body-timeout")
                    if isinstance(error, TimeoutError)
                    else (413, "body-too-large")
                )
                return self.local(exchange, status, reason)
            except BadMessage as error:
                return self._bad_body(exchange, error)

            stream = None if body is None or isinstance(body, bytes) else body
            retryable = stream is None and self.retry.retries_method(request.method)
            target = request.target
            fields = self.upstream_fields(request, exchange)
            if hook is not None and hook.extra_fields:
                fields += hook.extra_fields
            # 1xx answers (103 Early Hints) go on as they come; HTTP/1.0 knows none.
            interim = request.connection if request.version == "1.1" else None
            retries_done = 0
            while True:
                permit = self.breaker.acquire() if self.breaker.enabled else None
                if self.breaker.enabled and permit is None:
                    return self.local(
                        exchange, 503, "circuit-open", retry_after=self.breaker.retry_after()
                    )
                attempt_started = monotonic()
                remaining = deadline - attempt_started
                per_try = self.retry.per_try_timeout
                last_chance = not per_try or remaining <= per_try  # the request's own deadline
                attempt_timeout = per_try if per_try and per_try < remaining else remaining
                exchange.attempts += 1
                upstream: UpstreamResponse | None = None
                failure: UpstreamError | None = None
                try:
                    upstream = await self.pool.request(
                        request.method,
                        target,
                        fields,
                        body,
                        attempt_timeout,
                        request.content_length,
                        interim,
                    )
                except TimeoutError:
                    failure = PerTryTimeout(f"no response within {attempt_timeout:.3f}s")
                except OSError as error:
                    failure = classify_client_error(error)
                except BaseException:
                    if permit is not None:
                        self.breaker.release(permit)
                    raise

                if stream is not None and (
                    stream.failure is not None
                    # Timed out while the client's body was still to come: the
                    # upstream cannot answer a request it has not had whole.
                    or (isinstance(failure, PerTryTimeout) and stream.waiting_for_client)
                ):
                    # The client broke off or stalled its own body: not the upstream's fault.
                    if permit is not None:
                        self.breaker.release(permit)
                    if upstream is not None:
                        upstream.release()
                    if stream.malformed is not None:
                        return self._bad_body(exchange, stream.malformed)
                    return self.local(exchange, *(stream.failure or (408, "client-body-timeout")))
                elapsed = monotonic() - attempt_started
                if upstream is not None:
                    self.recorder.observe_upstream(upstream.status, elapsed)
                    if permit is not None:
                        self.breaker.record(permit, upstream.status < 500)
                    wants_retry = self.retry.retries_status(upstream.status)
                else:
                    assert failure is not None
                    self.recorder.observe_upstream(0, elapsed)
                    if permit is not None:
                        self.breaker.record(permit, False)
                    # The timer runs on the loop's clock, which may be a millisecond
                    # behind this one: a timeout of the last chance is the request's.
                    timed_out = isinstance(failure, PerTryTimeout) and last_chance
                    if timed_out or monotonic() >= deadline:
                        return self.local(exchange, 504, "request-timeout")
                    wants_retry = self.retry.retries_error(failure.retry_on)

                # Cheapest checks first: most attempts succeed and go straight to the relay.
                may_retry = retryable and wants_retry and retries_done < self.retry.attempts
                if may_retry:
                    delay = self.retry.backoff(retries_done)
                    may_retry = monotonic() + delay < deadline and (
                        holding_budget or self.retry_budget.try_acquire()
                    )
                if not may_retry:
                    if upstream is not None:
                        instead = hook.substitute(upstream) if hook else None
                        if instead is not None:
                            upstream.release()
                            return instead
                        if hook is None:
                            whole = self._whole_now(request, upstream, exchange)
                            if whole is not None:
                                return whole
                        return await self._relay(request, upstream, exchange, hook)
                    assert failure is not None
                    log.debug(
                        "upstream attempt failed",
                        extra={"request_id": exchange.request_id, "error": str(failure)},
                    )
                    return self.local(exchange, failure.status, failure.reason)
                holding_budget = True
                if upstream is not None:
                    upstream.release()
                retries_done += 1
                self.recorder.retries.inc()
                await asyncio.sleep(delay)
        finally:
            self.concurrency.release()
            if holding_budget:
                self.retry_budget.release()

    def _bad_body(self, exchange: Exchange, error: BadMessage) -> Response:
        """A body whose framing broke (or whose trailers passed the limits): answered now."""
        log.info(
            "malformed request body",
            extra={"request_id": exchange.request_id, "error": str(error)},
        )
        return self.local(exchange, error.status, error.reason)

    async def _request_body(
        self, request: Request, length: int | None
    ) -> bytes | RequestBodyStream:
        """The body to send: bytes when it fits the retry buffer, else a stream."""
        content = request.content
        assert content is not None
        cap = self.retry.max_buffered_body
        if length is not None and length <= cap:
            return await content.read(self.idle_timeout)
        prefix = bytearray()
        if length is None:  # chunked: buffer it if it turns out small
            while len(prefix) <= cap:
                chunk = await content.readany(self.idle_timeout)
                if not chunk:
                    return bytes(prefix)
                prefix += chunk
                if len(prefix) > self.max_body:
                    raise BodyTooLarge
        return RequestBodyStream(request, bytes(prefix), self.max_body, self.idle_timeout)

    @staticmethod
    def _own_fields(exchange: Exchange) -> bytes:
        """The fields the sidecar adds to a relayed answer, encoded."""
        if exchange.cache_status:
            return exchange.id_field + b"X-Rampart-Cache: %s\r\n" % exchange.cache_status.encode()
        return exchange.id_field

    def _whole_now(
        self, request: Request, upstream: UpstreamResponse, exchange: Exchange
    ) -> Response | None:
        """``_relay`` without a coroutine, for the usual case: a small body that came
        with the head, and no cache to keep it. None when ``_relay`` must do it."""
        length = upstream.content_length
        if (
            length is None
            or length > _BUFFERED_RESPONSE_LIMIT
            or request.method == "HEAD"
            or upstream.status in NO_BODY_STATUSES
        ):
            return None
        body = upstream.content.take()
        if body is None:
            return None
        exchange.status = upstream.status
        upstream.release()
        return Response(
            upstream.status, None, body, upstream.reason, upstream.head, self._own_fields(exchange)
        )

    async def _relay(
        self,
        request: Request,
        upstream: UpstreamResponse,
        exchange: Exchange,
        hook: ResponseHook | None = None,
    ) -> Response | StreamResponse:
        """Send the upstream's response to the client, whole when small, else streamed."""
        exchange.status = upstream.status
        # The upstream's own fields go as they came (``relayed``); these are ours.
        own = self._own_fields(exchange)
        headers: CIMultiDict[str] | None = None
        length = upstream.content_length
        no_body = request.method == "HEAD" or upstream.status in NO_BODY_STATUSES
        # An event stream is never stored, and never timed out for being quiet.
        storing = hook is not None and not upstream.head.is_event_stream and hook.storable(upstream)
        whole_limit = (
            max(hook.max_body, _BUFFERED_RESPONSE_LIMIT)
            if storing and hook
            else (_BUFFERED_RESPONSE_LIMIT)
        )
        try:
            body: bytes | None = None
            prefix = b""
            if no_body:
                body = b""
                if length is not None:
                    headers = CIMultiDict({"Content-Length": str(length)})
            elif length is not None and length <= whole_limit:
                content = upstream.content
                body = content.take() if content.complete else None
                if body is None:
                    body = await content.read(self.idle_timeout)
            elif storing and length is None:
                # Unknown length: keep it whole if it turns out small enough to store.
                prefix, complete = await upstream.read_up_to(whole_limit, self.idle_timeout)
                body = prefix if complete else None
            if body is not None:
                if storing and hook is not None:
                    await hook.store(upstream, body)
                return Response(upstream.status, headers, body, upstream.reason, upstream.head, own)

            response = StreamResponse(
                upstream.status, CIMultiDict(), upstream.reason, length, upstream.head, own
            )
            await response.prepare(request)
            exchange.headers_sent = monotonic()
            idle = None if upstream.head.is_event_stream else self.idle_timeout
            try:
                if prefix:
                    await response.write(prefix)
                while True:
                    chunk = await upstream.content.readany(idle)
                    if not chunk:
                        break
                    await response.write(chunk)
            except (TimeoutError, OSError) as error:
                # The status line is gone already; cutting the connection is the
                # only way left to tell the client its body is incomplete.
                exchange.body_error = type(error).__name__
                request.abort()
                return response
            await response.write_eof()
            return response
        except (TimeoutError, OSError):
            # Failed while reading a small body, before anything was sent.
            return self.local(exchange, 502, "upstream-reset")
        finally:
            upstream.release()

    def local(
        self, exchange: Exchange, status: int, reason: str, retry_after: int | None = None
    ) -> Response:
        """An answer the sidecar makes itself, saying why in ``X-Rampart-Reason``."""
        exchange.status = status
        exchange.reason = reason  # counted when the exchange ends (_finish)
        headers = CIMultiDict(
            {
                "Content-Type": "text/plain; charset=utf-8",
                "X-Rampart-Reason": reason,
                "X-Request-ID": exchange.request_id,
            }
        )
        if exchange.cache_status:
            headers["X-Rampart-Cache"] = exchange.cache_status
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return Response(status, headers, (reason + "\n").encode())

    def count_rejection(self, reason: str) -> None:
        child = self._rejected_children.get(reason)
        if child is None:
            child = self.recorder.rejected.labels(reason)
            self._rejected_children[reason] = child
        child.inc()

    def _finish(self, request: Request, exchange: Exchange) -> None:
        now = monotonic()
        if exchange.reason and exchange.cache_status != "STALE":
            # Counted here, not when the answer was made: a stale cached 200 sent in
            # its place is neither a rejection nor a timeout to the client.
            if exchange.status == 504:
                self.recorder.timeouts.inc()
            else:
                self.count_rejection(exchange.reason)
        to_headers = (exchange.headers_sent or now) - exchange.started
        self.recorder.observe_request(
            exchange.method, exchange.status, exchange.route.name, to_headers
        )
        if self.access_log and self._access.enabled():
            extra: dict[str, object] = {
                "request_id": exchange.request_id,
                "method": exchange.method,
                "path": exchange.path,  # never the query string: it may hold tokens
                "status": exchange.status,
                "route": exchange.route.name,
                "duration_ms": round((now - exchange.started) * 1000, 3),
                "attempts": exchange.attempts,
                "client": request.remote,
            }
            if exchange.reason:
                extra["reason"] = exchange.reason
            if exchange.cache_status:
                extra["cache"] = exchange.cache_status
            if exchange.body_error:
                extra["body_error"] = exchange.body_error
            self._access.write(extra, self._loop)
        if self._debug:
            log.debug(
                "request headers",
                extra={
                    "request_id": exchange.request_id,
                    "headers": redact_headers(request.headers, self.secret_headers),
                },
            )
