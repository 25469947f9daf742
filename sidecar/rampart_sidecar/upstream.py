"""The pool of HTTP/1.1 connections to the application, and the responses read from them.

Why not aiohttp's ``ClientSession``: on the sidecar's hot path it cost more
than everything else together. An aiohttp server relaying through it did 4.9k
requests/s on one core; relaying through this pool, 16.1k (bench/proxy_bench.py
has the sidecar's own numbers). This client does only what a sidecar needs:
one origin, keep-alive, bodies streamed both ways with back-pressure, and
responses parsed by llhttp (``httptools``), the parser Node.js uses.

A connection goes back to the pool only when its response was read to the
end and both sides said keep-alive; anything else closes it. Idle connections
close after ``upstream.idleTimeout`` (below the application's own keep-alive
timeout, so the sidecar never writes into a socket the application is closing).

A response ends where its framing says: bytes after it (a second response in
the same write, a body after a 204) are never parsed into it, and the
connection that carried them is closed. The head is bounded (64 KiB, 256
fields) and so is a trailer section, whose fields are dropped: the sidecar
re-frames the body, and a trailer must not reach what the cache stores. 1xx
interim responses other than 100 and 101 (103 Early Hints) go to ``interim``
(the client's connection) as they arrive; a 101 to a request that did not ask
to upgrade is an error.

Errors (all ``ConnectionError``, so ``OSError``):
    UpstreamConnectError   no connection could be made; nothing was sent
    UpstreamClosed         the connection broke before the response ended
    UpstreamUnreadable     the response broke HTTP/1.1 or the limits above
A connect timeout raises ``TimeoutError``, as the caller's own deadline does.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterable
from typing import Any, Final, Protocol, cast

import httptools
from multidict import CIMultiDictProxy
from yarl import URL

from rampart_common.sidecar_settings import UpstreamSettings

from .errors import UpstreamClosed, UpstreamConnectError, UpstreamUnreadable
from .flow import BodyBuffer, WriteFlow
from .headers import CHARSET, ENCODING, ERRORS, FieldKinds, Fields, ResponseHead, decode_fields

__all__ = [
    "ENCODING",
    "NO_BODY_STATUSES",
    "UpstreamClosed",
    "UpstreamConnectError",
    "UpstreamPool",
    "UpstreamResponse",
]

NO_BODY_STATUSES: Final = frozenset({204, 304})  # never a body, whatever the headers say
MAX_HEAD_BYTES: Final = 64 * 1024  # a response head, and (apart) a trailer section
MAX_FIELDS: Final = 256


class Interim(Protocol):
    """Where an interim (1xx) response's status, reason and fields go: the client's
    connection itself, not a bound method of it (one less object a request)."""

    def write_interim(self, status: int, reason: str, head: ResponseHead) -> None: ...


Body = bytes | AsyncIterable[bytes] | None
_NO_FIELDS: Final = ResponseHead([])


class UpstreamResponse:
    """One response: status and headers at once, the body as it arrives.

    ``content.readany()`` returns what has arrived (b"" at the end); ``read()``
    the whole body. ``release()`` must be called once the caller is done,
    which returns the connection to the pool or closes it.
    """

    def __init__(
        self, connection: _Connection, for_head: bool, interim: Interim | None = None
    ) -> None:
        loop = connection.loop
        self._connection = connection
        self._for_head = for_head
        self._interim = interim
        self.ended = False  # the final response's message is complete
        self.head_bytes = 0  # read while its head was incomplete
        self.body_bytes = 0
        self.framing_run = 0  # bytes since the last body byte: chunk lines, trailers
        self._trailer_fields = 0
        self.status = 0
        self.reason = ""
        self.fields: Fields = []
        self.head = _NO_FIELDS  # what the proxy reads of the fields, once they are complete
        self._headers: CIMultiDictProxy[str] | None = None
        self.content = BodyBuffer(loop, connection)
        self.keep_alive = False
        self._until_close = False  # no length and not chunked: the body ends with the connection
        self.headers_arrived: asyncio.Future[None] = loop.create_future()
        self.sender: asyncio.Task[None] | None = None
        self._released = False

    # -- what the caller reads ------------------------------------------------

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The fields decoded, for the cache; the relay itself reads ``head``."""
        if self._headers is None:
            self._headers = decode_fields(self.fields)
        return self._headers

    @property
    def content_length(self) -> int | None:
        return self.head.content_length

    async def read(self, timeout: float | None = None) -> bytes:
        return await self.content.read(timeout)

    async def read_up_to(self, limit: int, timeout: float | None) -> tuple[bytes, bool]:
        """Read until the end or past ``limit``; True when the end came first."""
        buffer = bytearray()
        while len(buffer) <= limit:
            chunk = await self.content.readany(timeout)
            if not chunk:
                return bytes(buffer), True
            buffer += chunk
        return bytes(buffer), False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        connection = self._connection
        sent = self.sender is None or self.sender.done()
        if (
            self.content.complete
            and self.content.error is None
            and self.keep_alive
            and not self._until_close
            and sent
            and not connection.closed
        ):
            connection.pool.put_back(connection)
        else:
            connection.discard()

    # -- what the connection tells it -------------------------------------------

    def fail(self, error: BaseException) -> None:
        content = self.content
        if content.complete:
            return
        if self._until_close and self.headers_arrived.done() and content.error is None:
            content.finish()  # the connection closing is how such a body ends
            return
        content.fail(error)
        if not self.headers_arrived.done():
            self.headers_arrived.set_exception(error)
            self.headers_arrived.exception()  # retrieved here; the caller gets it by awaiting

    def expire(self) -> None:
        """The caller's deadline passed before the response's head arrived."""
        if not self.headers_arrived.done():
            self.headers_arrived.set_exception(TimeoutError())

    # -- llhttp's callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        if self.ended:
            # A second message after the final one: never read into this response.
            raise UpstreamUnreadable("bytes after the end of the response")

    def on_status(self, reason: bytes) -> None:
        # llhttp hands a reason phrase split across reads over in pieces.
        self.reason += reason.decode(CHARSET, ERRORS)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.status:
            # A trailer field: dropped (the body is re-framed), counted.
            self._trailer_fields += 1
            if self._trailer_fields > MAX_FIELDS:
                raise UpstreamUnreadable("too many trailer fields")
            return
        self.fields.append((name, value))
        if len(self.fields) > MAX_FIELDS:
            raise UpstreamUnreadable("too many header fields")

    def on_headers_complete(self) -> None:
        parser = self._connection.parser
        status = parser.get_status_code()
        if status < 200:
            if status != 100 and status != 101 and self._interim is not None:
                self._interim.write_interim(status, self.reason, ResponseHead(self.fields))
            self.reason = ""
            self.fields = []  # 100 Continue, 103 Early Hints: the answer follows
            self.head_bytes = 0
            return
        head = ResponseHead(self.fields, self._connection.kinds)
        if not head.relayable_framing:
            raise UpstreamUnreadable("a transfer coding other than chunked")
        self.status = status
        self.head = head
        self.keep_alive = parser.should_keep_alive()
        no_body = self._for_head or status in NO_BODY_STATUSES
        self._until_close = not no_body and not head.chunked and head.content_length is None
        self.headers_arrived.set_result(None)
        if no_body:
            # llhttp would wait for the body a HEAD answer announces but never has.
            self.content.finish()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        self.content.feed(body)

    def on_message_complete(self) -> None:
        if self.status >= 200:
            self.ended = True
            self.content.finish()


class _Connection(WriteFlow):
    """One connection to the application, and llhttp's callbacks for the response on it.

    One parser serves every response the connection carries, as llhttp is made
    to (a parser made per response cost 2,600 instructions of the ~130,000 a
    request takes). Its callbacks go to the response being read; after an
    answer to HEAD, whose announced body never comes, the next response gets
    a new parser.
    """

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.response: UpstreamResponse | None = None
        self.parser: Any = None
        self.kinds = FieldKinds()  # an application sends the same names answer after answer
        self._reusable_parser = False  # False after a HEAD: llhttp waits for its body
        self.idle_timer: asyncio.TimerHandle | None = None
        self.idle_since: float | None = None  # None while in use
        # When the response being waited for must have its head; None when not waiting.
        self.head_deadline: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_timer_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser = None  # it calls back into this connection: a cycle, broken here
        if self.response is not None:
            self.response.fail(UpstreamClosed(str(exc) if exc else "the application closed"))
        self.release_writers()
        self.pool.forget(self)

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:
            self.discard()  # nothing was asked: an idle connection has no business talking
            return
        in_head = not response.status
        body_before = response.body_bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            unreadable = cause if isinstance(cause, UpstreamUnreadable) else error
            self._unreadable(response, str(unreadable))
            return
        except httptools.HttpParserError as error:
            self._unreadable(response, str(error))
            return
        except httptools.HttpParserUpgrade:
            self._unreadable(response, "101 Switching Protocols to a request without Upgrade")
            return
        # llhttp keeps a field until it ends: these bound one that never does.
        if in_head:
            response.head_bytes += len(data)
            if response.head_bytes > MAX_HEAD_BYTES and not response.status:
                self._unreadable(response, "response head too large")
        else:
            fed = response.body_bytes - body_before
            framing = len(data) - fed
            response.framing_run = framing if fed else response.framing_run + framing
            if response.framing_run > MAX_HEAD_BYTES:
                self._unreadable(response, "trailer section too large")

    def _unreadable(self, response: UpstreamResponse, why: str) -> None:
        """The response broke HTTP/1.1: what it said so far stands if it ended, else it
        fails; either way the connection goes, with whatever it still holds."""
        response.fail(UpstreamUnreadable(f"unreadable response: {why}"))
        self.discard()

    def eof_received(self) -> bool:
        return False  # close our side too

    def closed_error(self) -> ConnectionError:
        return UpstreamClosed("closed while sending")

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def start(self, method: str, interim: Interim | None = None) -> UpstreamResponse:
        for_head = method == "HEAD"
        response = UpstreamResponse(self, for_head, interim)
        self.response = response
        if self.parser is None or not self._reusable_parser:
            self.parser = httptools.HttpResponseParser(self)
        self._reusable_parser = not for_head
        return response

    # -- llhttp's callbacks, for the response being read -------------------------

    def on_message_begin(self) -> None:
        if self.response is not None:
            self.response.on_message_begin()

    def on_status(self, reason: bytes) -> None:
        if self.response is not None:
            self.response.on_status(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response.on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response.on_body(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response.on_message_complete()

    def expect_head_by(self, deadline: float) -> None:
        """Expire the response unless its head arrives by ``deadline`` (loop time).

        The timer is lazy, as the server's head timer: one armed timer per
        connection serves request after request, since each deadline is
        usually later than the last, instead of a timer made and cancelled
        per request.
        """
        self.head_deadline = deadline
        if self._head_timer is not None:
            if self._head_timer_at <= deadline:
                return
            self._head_timer.cancel()  # an earlier deadline than the armed one
        self._head_timer = self.loop.call_at(deadline, self._on_head_timer)
        self._head_timer_at = deadline

    def _on_head_timer(self) -> None:
        self._head_timer = None
        deadline = self.head_deadline
        if deadline is None or self.closed:
            return
        if self.loop.time() < deadline:
            self._head_timer = self.loop.call_at(deadline, self._on_head_timer)
            self._head_timer_at = deadline
        elif self.response is not None:
            self.head_deadline = None
            self.response.expire()

    def discard(self) -> None:
        """Close, whatever state it is in; the pool forgets it."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.response is not None and self.response.sender is not None:
            self.response.sender.cancel()
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True
        self.parser = None
        self.pool.forget(self)


class UpstreamPool:
    def __init__(self, settings: UpstreamSettings) -> None:
        url = URL(settings.url)
        # Typed here: compiled, yarl and the settings are Any, and a declared type is native.
        self.host: str = url.host or "127.0.0.1"
        self.port: int = url.port or (443 if url.scheme == "https" else 80)
        self.authority: str = url.raw_authority
        self.ssl = ssl.create_default_context() if url.scheme == "https" else None
        self.base_path: str = url.raw_path.rstrip("/")
        self.base_path_bytes = self.base_path.encode(*ENCODING)
        self._line_starts: dict[str, bytes] = {}  # method -> the request line up to the target
        self.connect_timeout: float = float(settings.connect_timeout)
        self.idle_timeout: float = float(settings.idle_timeout)
        self.limit: int = settings.max_connections
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        # Kept: in CPython 3.11 each asyncio.get_running_loop() is a getpid() system call.
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def waiting(self) -> int:
        """Requests waiting for a connection because ``max_connections`` are open."""
        return len(self._waiters)

    # -- connections ------------------------------------------------------

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            connection.idle_since = None  # its idle timer, if armed, lets it be
            if not connection.closed:
                return connection
        return None

    async def _acquire(self) -> _Connection:
        connection = self._idle_connection()
        if connection is not None:
            return connection
        while len(self._open) + self._connecting >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled: the next in line gets the turn
                raise
            if self._idle:
                return await self._acquire()
        self._connecting += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await asyncio.get_running_loop().create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            raise  # an OSError too, but the caller's timeout, not a refused connection
        except OSError as error:
            raise UpstreamConnectError(str(error) or type(error).__name__) from error
        finally:
            self._connecting -= 1
            self._wake_one()
        self._open.add(connection)
        return connection

    def put_back(self, connection: _Connection) -> None:
        connection.response = None
        if self._closing:
            connection.discard()
            return
        # The timer is lazy, as the server's head timer: armed once and re-armed
        # when it finds the connection used since, not created and cancelled per request.
        connection.idle_since = now = connection.loop.time()
        if connection.idle_timer is None:
            connection.idle_timer = connection.loop.call_at(
                now + self.idle_timeout, self._on_idle_timer, connection
            )
        self._idle.append(connection)
        self._wake_one()

    def _on_idle_timer(self, connection: _Connection) -> None:
        connection.idle_timer = None
        since = connection.idle_since
        if since is None or connection.closed:
            return  # in use: put_back arms it again
        deadline = since + self.idle_timeout
        if connection.loop.time() < deadline:
            connection.idle_timer = connection.loop.call_at(
                deadline, self._on_idle_timer, connection
            )
        else:
            connection.discard()

    def forget(self, connection: _Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            if connection.idle_timer is not None:
                connection.idle_timer.cancel()
                connection.idle_timer = None
            if connection in self._idle:
                self._idle.remove(connection)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closing = True
        for connection in list(self._open):
            connection.discard()

    # -- requests ---------------------------------------------------------

    def request_head(self, method: str, target: str, fields: bytes, framing: bytes = b"") -> bytes:
        """The request line, ``fields`` (encoded, Host among them) and ``framing``."""
        start = self._line_starts.get(method)
        if start is None:
            # "GET /base": a few dozen at most, since llhttp knows no other methods.
            start = self._line_starts[method] = method.encode() + b" " + self.base_path_bytes
        parts = [start, target.encode(CHARSET, ERRORS), b" HTTP/1.1\r\n", fields]
        if framing:
            parts.append(framing)
        parts.append(b"\r\n")
        return b"".join(parts)

    async def request(
        self,
        method: str,
        target: str,
        fields: bytes,
        body: Body = None,
        timeout: float | None = None,
        content_length: int | None = None,
        interim: Interim | None = None,
    ) -> UpstreamResponse:
        """Send one request and return once the response's headers have arrived.

        ``target`` is the path and query as the client encoded them; ``fields``
        the header fields, encoded, without framing. A bytes body goes with its
        Content-Length; a streamed one with ``content_length`` when the client
        gave one, else chunked. ``TimeoutError`` when the head has not arrived
        within ``timeout`` seconds, waiting for a connection included.
        ``interim`` gets each 1xx response to pass on (not 100, not 101).
        """
        chunked = False
        if isinstance(body, bytes):
            framing = b"Content-Length: %d\r\n" % len(body)
        elif body is None:
            framing = b""
        elif content_length is not None:
            framing = b"Content-Length: %d\r\n" % content_length
        else:
            framing = b"Transfer-Encoding: chunked\r\n"
            chunked = True
        loop = self.loop
        deadline = loop.time() + timeout if timeout is not None else None
        connection = self._idle_connection()
        if connection is None:  # the slow path: wait for a turn, or connect
            async with asyncio.timeout_at(deadline):
                connection = await self._acquire()
        try:
            response = connection.start(method, interim)
            head = self.request_head(method, target, fields, framing)
            assert connection.transport is not None
            if isinstance(body, bytes):
                connection.transport.write(head + body if body else head)
            else:
                connection.transport.write(head)
                if body is not None:
                    response.sender = asyncio.create_task(self._send(connection, body, chunked))
            if not response.headers_arrived.done():
                if deadline is not None:
                    connection.expect_head_by(deadline)
                try:
                    await response.headers_arrived
                finally:
                    connection.head_deadline = None
            else:
                response.headers_arrived.result()
        except BaseException:
            connection.discard()
            raise
        return response

    async def _send(
        self, connection: _Connection, body: AsyncIterable[bytes], chunked: bool
    ) -> None:
        transport = connection.transport
        assert transport is not None
        try:
            async for chunk in body:
                if not chunk:
                    continue
                if chunked:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    transport.write(chunk)
                await connection.drain()
            if chunked:
                # The client's trailer fields, when the body came chunked and streamed.
                trailers: bytes = getattr(body, "trailers", b"")
                transport.write(b"0\r\n%b\r\n" % trailers)
        except asyncio.CancelledError:
            connection.discard()
            raise
        except Exception as error:
            # The client's body broke off (or the upstream went): the request
            # cannot be completed, so neither can this connection.
            if connection.response is not None:
                connection.response.fail(UpstreamClosed(f"request body: {error!r}"))
            connection.discard()
