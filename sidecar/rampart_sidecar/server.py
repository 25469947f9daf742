"""The proxy listener's HTTP/1.1 server: asyncio protocols and llhttp, nothing in between.

Why not aiohttp's server: it was most of the sidecar's cost per request (see
docs/benchmarks.md). This one parses with llhttp (``httptools``), hands the
proxy a ``messages.Request`` as soon as a head is complete, and writes each
answer with as few writes as it can. It keeps what a server facing the
network must:

- keep-alive, and pipelined requests answered in order;
- a deadline for each request head (``server.idleTimeout``), which also closes
  idle keep-alive connections and stops clients that send a byte a second;
- ``server.maxHeaderBytes`` for the request line (414) and each header field
  (431), eight times that for the whole head, ``server.maxHeaderFields`` fields;
  the same limits for a trailer section, whose fields never join the head;
- a head the proxy could not forward faithfully (no or several Host fields, a
  Host that is not host:port, a transfer coding other than chunked, HTTP/2.0
  on an HTTP/1 line) is refused before anything is forwarded;
- a body whose chunked framing breaks fails at once, so the proxy reading it
  answers 400 now, not after a timeout;
- back-pressure both ways: reading pauses while a body waits unread, and
  answers wait while the client is not reading;
- requests it cannot parse get one 4xx or 5xx with ``X-Rampart-Reason`` (``bad-request``
  mostly), are counted and logged as one line (a scanner must not flood the logs);
- a client that goes away cancels its request;
- Upgrade (WebSocket) requests can take the connection over as a byte tunnel;
- a lingering close whenever it ends a connection after an answer (before the
  request body was read, after a request refused behind it or one that said
  close), so a client still sending reads the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, Final, cast

import httptools
from multidict import CIMultiDict

from rampart_common.sidecar_settings import ServerSettings

from .errors import BadMessage, HeadTooLarge
from .flow import BodyBuffer, WriteFlow
from .headers import (
    CHARSET,
    ERRORS,
    FieldKinds,
    Fields,
    RequestHead,
    ResponseHead,
    forwardable_trailers,
    request_id,
)
from .messages import Request, Response, StreamResponse, reason_phrase
from .upstream import ENCODING, NO_BODY_STATUSES

__all__ = ["HttpConnection", "ProxyServer"]

log = logging.getLogger("rampart.server")

Handler = Callable[[Request], Awaitable["Response | StreamResponse"]]

_HEAD_LIMIT_FACTOR: Final = 8  # the whole head may be this many maxHeaderBytes
_MAX_QUEUED: Final = 16  # pipelined requests parsed ahead; reading pauses beyond this
_LINGER: Final = 2.0  # seconds to swallow a body nobody read before closing
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_HIGH_LEFTOVER: Final = 64 * 1024  # bytes after an Upgrade head kept until the tunnel takes them


class _HttpDate:
    """The ``Date`` field, encoded once a second rather than per response."""

    def __init__(self) -> None:
        self._second = 0
        self._field = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._field = b"Date: %s\r\n" % formatdate(now, usegmt=True).encode()
        return self._field


class HttpConnection(WriteFlow):
    """One client connection: parses requests, runs the handler for each in turn, writes answers."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.parser: Any = httptools.HttpRequestParser(self)
        self.closed = False
        # the request being parsed, those parsed and waiting, the one being answered
        self._parsing: Request | None = None
        self._queue: deque[Request] = deque()
        self._current: Request | None = None
        self._task: asyncio.Task[None] | None = None  # answers this connection's requests
        self._waiter: asyncio.Future[None] | None = None  # set when a request is parsed
        self._url = b""
        self._fields: Fields = []
        self._kinds = FieldKinds()  # a client sends the same names head after head
        self._trailers: Fields = []
        self._trailer_bytes = 0
        self._body_bytes = 0  # fed to the body being parsed, so framing bytes can be told apart
        self._framing_run = 0  # bytes since the last body byte: chunk lines, trailers
        self._head_bytes = 0  # of the head being parsed, in the chunks before this one
        self._chunk_bytes = 0  # of the chunk being parsed
        self._chunk = b""  # the chunk being parsed
        self._at_boundary = False  # the chunk being parsed began between two messages
        self._line_chunk = b""  # the chunk whose first byte began the head being parsed
        self._in_head = False
        self._stop_parsing = False  # after a Connection: close request, an upgrade or garbage
        self._upgrading = False
        self._must_close = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_deadline: float | None = None  # None: not waiting for a head
        self._pauses: set[str] = set()
        self._stream_open = False
        self._tunnel: asyncio.StreamReader | None = None
        self._leftover = b""  # bytes after an Upgrade head, for the tunnel

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else ""
        self.server.connections.add(self)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.forget(self)
        self._cancel_head_timer()
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client went away: stop working for it
        # The task runs a coroutine holding this connection, and the parser calls back into
        # it: both are cycles. Broken here, the connection is freed as soon as its task
        # ends, not at the next pass of the garbage collector (which app.settle_heap makes
        # rare). Nothing feeds the parser after connection_lost.
        self._task = None
        self.parser = None
        gone = self.closed_error()
        for request in (self._parsing, *self._queue):
            if request is not None and request.content is not None:
                request.content.fail(gone)
        if self._tunnel is not None:
            self._tunnel.feed_eof()
        self.release_writers()

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._tunnel.feed_data(data)
            return
        if self._stop_parsing:
            if self._upgrading:
                self._leftover += data  # the tunnel's first bytes, if it is taken
                if len(self._leftover) > _HIGH_LEFTOVER:
                    self._pause("upgrade")
            return
        self._chunk_bytes = len(data)
        in_body = self._parsing is not None and not self._in_head
        self._at_boundary = self._parsing is None and not self._in_head
        self._chunk = data
        body_before = self._body_bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # Answered like any request; only a handler that takes the
            # connection over (a WebSocket) keeps it open afterwards.
            self._stop_parsing = self._upgrading = self._must_close = True
            self._leftover = data[upgrade.args[0] :]
            return
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__ or error.__cause__
            if isinstance(cause, BadMessage):
                self._refuse(cause)
            else:
                self._refuse(BadMessage(str(error)))
            return
        except httptools.HttpParserError as error:
            self._refuse(BadMessage(str(error)))
            return
        self._chunk = b""  # not kept while the connection waits
        if self._in_head:
            # llhttp keeps a field until it ends: this bounds one that never does.
            self._head_bytes += len(data)
            if self._head_bytes > self.server.max_head_bytes:
                self._refuse(HeadTooLarge("head too large"))
        elif in_body and self._parsing is not None:
            # And a trailer field, or a chunk line, that never ends: bytes that are
            # not body, counted since the last body byte.
            framing = len(data) - (self._body_bytes - body_before)
            self._framing_run = (
                framing if self._body_bytes > body_before else self._framing_run + framing
            )
            if self._framing_run > self.server.max_head_bytes:
                self._refuse(HeadTooLarge("trailer section too large"))

    def eof_received(self) -> bool:
        if self._tunnel is not None:
            self._tunnel.feed_eof()
            return True
        # A client that stops sending has gone away, as nginx and aiohttp treat it:
        # closing cancels what it asked for instead of finishing it for nobody.
        return False

    def closed_error(self) -> ConnectionError:
        return ConnectionResetError("the client closed the connection")

    # -- llhttp's callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        # The chunk this head began, when it began at the chunk's first byte: its
        # request line can be read without asking the parser (``_line_version``).
        self._line_chunk = self._chunk if self._at_boundary else b""
        self._at_boundary = False
        self._in_head = True
        self._head_bytes = 0
        self._url = b""
        self._fields = []
        self._trailers = []
        self._trailer_bytes = 0
        self._framing_run = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.server.max_header_bytes:
            raise HeadTooLarge("request line too long", 414, "uri-too-long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            # Sizes are checked once the head is complete (``_check_sizes``): until
            # then what is kept is bounded by the chunks read, which data_received bounds.
            fields = self._fields
            fields.append((name, value))
            if len(fields) > self.server.max_header_fields:
                raise HeadTooLarge("too many header fields")
            return
        # A trailer field (after a chunked body): kept apart from the head, so a
        # field the upstream may never see cannot choose a cached variant, and
        # bounded like the head.
        self._trailers.append((name, value))
        self._trailer_bytes += len(name) + len(value) + 2
        if len(self._trailers) > self.server.max_header_fields:
            raise HeadTooLarge("too many trailer fields")
        if self._trailer_bytes > self.server.max_head_bytes:
            raise HeadTooLarge("trailer section too large")

    def _check_sizes(self, fields: Fields) -> None:
        head_size = 0
        for name, value in fields:
            size = len(name) + len(value) + 2
            if size > self.server.max_header_bytes:
                raise HeadTooLarge("header field too long")
            head_size += size
        if head_size > self.server.max_head_bytes:
            raise HeadTooLarge("head too large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self.parser
        fields = self._fields
        # A head that came in fewer bytes than one field may have needs no check.
        if self._head_bytes + self._chunk_bytes > self.server.max_header_bytes:
            self._check_sizes(fields)
        head = RequestHead(fields, self._kinds)
        method_name: bytes = parser.get_method()
        version = _line_version(self._line_chunk, method_name, len(self._url))
        self._line_chunk = b""
        if version is None:
            version = parser.get_http_version()
        refusal = head.refusal(version)
        if refusal is not None:
            raise BadMessage(*refusal)
        method = method_name.decode("ascii")
        raw_url = self._url
        raw_path = raw_url.decode(CHARSET, ERRORS)
        query = ""
        target = raw_path
        # A path alone, most requests: what parse_url would make of it, for less. Searched
        # as str: compiled, ``in`` on a str is a direct call, where on bytes it costs
        # about 1,000 instructions (see headers.has).
        if not raw_path.startswith("/") or "?" in raw_path or "#" in raw_path:
            raw_path, query, target = _split_target(raw_url)
        body = None
        if head.chunked or head.content_length:
            body = BodyBuffer(
                self.loop, self, self.send_continue if head.expects_continue else None
            )
        request = Request(
            self,
            method,
            raw_path,
            query,
            target,
            head,
            version,
            # llhttp's answers, asked only when they may differ from what they are
            # without such fields: keep-alive in HTTP/1.1, no upgrade but for CONNECT.
            parser.should_keep_alive() if head.connection_fields or version != "1.1" else True,
            parser.should_upgrade() if head.upgrade_field or method == "CONNECT" else False,
            body,
        )
        self._parsing = request
        self._head_deadline = None
        self._queue.append(request)
        if self._task is None:
            self._task = self.loop.create_task(self._serve())
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if len(self._queue) >= _MAX_QUEUED:
            self._pause("queue")

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        request = self._parsing
        if request is not None and request.content is not None:
            request.content.feed(body)

    def on_message_complete(self) -> None:
        request = self._parsing
        self._parsing = None
        if request is None:
            return
        if request.content is not None:
            if self._trailers:
                request.content.trailers = forwardable_trailers(self._trailers)
            request.content.finish()
        if not request.keep_alive:
            self._stop_parsing = True  # llhttp refuses anything after it anyway

    # -- answering ------------------------------------------------------------

    async def _serve(self) -> None:
        """Answer the requests in the order they came, while the connection lasts.

        One task per connection rather than per request: a keep-alive client's
        next request costs a future, not a task.
        """
        loop = self.loop
        while not self.closed:
            if not self._queue:
                self._arm_head_timer()
                self._waiter = loop.create_future()
                try:
                    await self._waiter
                except asyncio.CancelledError:
                    return
                finally:
                    self._waiter = None
                continue
            request = self._current = self._queue.popleft()
            if self._pauses and len(self._queue) < _MAX_QUEUED:
                self._resume("queue")
            # The handler is awaited here rather than in a coroutine of its own: each
            # level of coroutine costs every request an object and two resumptions.
            try:
                response: Response | StreamResponse | None = await self.server.handler(request)
            except asyncio.CancelledError:
                return
            except Exception:
                response = self._failed_handler()
            if response is None or not self._send(request, response):
                return
            if self._writable is not None:  # the client is not reading: wait until it does
                try:
                    await self.drain()
                except ConnectionError:
                    return
            self._current = None
            unread = request.content is not None and not request.content.complete
            if self._must_close or unread:
                self._queue.clear()
                # Lingering, always (as Apache does): a client may still be sending, an
                # unread body or requests after one that said close, and closing now would
                # meet them with a reset, which loses the answer for many clients.
                self._linger()
                return

    def _failed_handler(self) -> Response | None:
        """The answer to a request whose handler raised; None when none can be sent."""
        log.exception("unhandled error", extra={"client": self.peer})
        self.server.on_error("internal-error")
        if self._stream_open or self._tunnel is not None:
            self.abort()
            return None
        self._must_close = True
        return _plain(500, "internal-error")

    def _send(self, request: Request, response: Response | StreamResponse) -> bool:
        """Write the handler's answer, unless it wrote it itself (streamed); False when
        the connection cannot go on."""
        if self.closed or self._tunnel is not None:
            return False
        if not response.prepared:
            assert isinstance(response, Response)
            self._write_whole(request, response)
        elif self._stream_open:
            self.abort()  # the handler gave up on a streamed body half-way
            return False
        return True

    def _keeps_alive(self, request: Request) -> bool:
        return (
            request.keep_alive
            and not self.server.draining
            and not self._must_close
            # an unread body would be taken for the next request
            and (request.content is None or request.content.complete)
        )

    def _head(
        self,
        request: Request,
        response: Response | StreamResponse,
        framing: bytes,
        body: bytes = b"",
    ) -> bytes:
        """The whole head: status line, the upstream's fields, ours, then ``framing``;
        ``body`` after it, in the same join (a copy less than adding it afterwards)."""
        headers = response.headers_or_none
        relayed = response.relayed
        parts = [_status_line(response.status, response.reason)]
        has_date = False
        if relayed is not None:
            parts.append(relayed.relayed)
            has_date = relayed.has_date
        parts.append(response.own)
        if headers:
            fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
            parts.append(fields.encode(*ENCODING))
            has_date = has_date or "Date" in headers
        if not has_date:
            parts.append(self.server.date())
        if not self._keeps_alive(request):
            self._must_close = True  # said so: keep to it, whatever happens next
            parts.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(framing)
        parts.append(b"\r\n")
        if body:
            parts.append(body)
        return b"".join(parts)

    def _write_whole(self, request: Request, response: Response) -> None:
        status = response.status
        headers = response.headers_or_none
        body = response.body
        given_length = headers is not None and "Content-Length" in headers
        if body and given_length:
            del response.headers["Content-Length"]
        # A HEAD answer without a length says none: 0 would be a claim about the body.
        measured = body or (request.method != "HEAD" and not given_length)
        framing = b""
        if measured and status not in NO_BODY_STATUSES:
            framing = b"Content-Length: %d\r\n" % len(body)
        if request.method == "HEAD" or status in NO_BODY_STATUSES:
            body = b""
        self.write(self._head(request, response, framing, body))

    def start_stream(self, request: Request, response: StreamResponse) -> bool:
        """Write a streamed response's head; True when its body must go chunked."""
        chunked = False
        framing = b""
        if response.content_length is not None:
            framing = b"Content-Length: %d\r\n" % response.content_length
        elif request.version == "1.1":
            framing = b"Transfer-Encoding: chunked\r\n"
            chunked = True
        else:
            self._must_close = True  # an HTTP/1.0 body of unknown length ends with the connection
        self.write(self._head(request, response, framing))
        self._stream_open = True
        return chunked

    def write_head(self, status: int, reason: str, headers: CIMultiDict[str]) -> None:
        """A head exactly as given, with nothing added: for ``101 Switching Protocols``."""
        lines = _status_and_fields(status, reason, headers)
        lines.append("\r\n")
        self.write("".join(lines).encode(*ENCODING))

    def write_interim(self, status: int, reason: str, head: ResponseHead) -> None:
        """A 1xx response (103 Early Hints) relayed ahead of the answer to the current request."""
        if self._current is not None and not self._stream_open and not self.closed:
            self.write(_status_line(status, reason) + head.relayed + b"\r\n")

    def end_stream(self) -> None:
        self._stream_open = False

    def send_continue(self) -> None:
        if self._current is not None and self._current.version == "1.1" and not self.closed:
            self.write(_CONTINUE)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    # -- upgrades -------------------------------------------------------------

    def take_over(self) -> asyncio.StreamReader:
        """Turn the connection into a byte tunnel; what the client sends arrives in the reader.

        Only for a request that asked to upgrade. The caller writes with
        ``write``/``drain`` and closes with ``close`` when the tunnel ends.
        """
        assert self._current is not None
        assert self._current.upgrade
        reader = asyncio.StreamReader(limit=2**16)
        assert self.transport is not None
        reader.set_transport(self.transport)
        if self._leftover:
            reader.feed_data(self._leftover)
            self._leftover = b""
        self._resume("upgrade")
        if self.closed:
            reader.feed_eof()
        self._tunnel = reader
        return reader

    # -- closing --------------------------------------------------------------

    def _refuse(self, error: BadMessage) -> None:
        """A request the server will not pass on: one answer when nothing else is being
        answered, then close.

        When the error is in a body the proxy is already reading (its chunked
        framing broke), the body fails with it and the proxy answers.
        """
        self._stop_parsing = True
        self._head_deadline = None
        parsing = self._parsing
        if parsing is not None and parsing.content is not None and not self._in_head:
            self._parsing = None
            parsing.content.fail(error)  # the proxy's answer says why; logged there
            self._must_close = True
            return
        rid = request_id(None)
        log.info(
            "refused request",
            extra={"client": self.peer, "error": str(error), "request_id": rid},
        )
        self.server.on_error(error.reason)
        if self._current is not None or self._queue:
            self._must_close = True  # answer what came before, then close
            return
        self.write(_plain_bytes(error.status, error.reason, rid))
        self._linger()

    def _arm_head_timer(self) -> None:
        """Expect a complete head within ``idleTimeout``.

        The timer is lazy: disarming only clears the deadline, and a timer
        that fires early re-arms itself for what is left, so a keep-alive
        connection does not create and cancel a timer per request.
        """
        self._head_deadline = self.loop.time() + self.server.idle_timeout
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_deadline, self._on_head_timer)

    def _on_head_timer(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None or self.closed:
            return
        if self.loop.time() < deadline:
            self._head_timer = self.loop.call_at(deadline, self._on_head_timer)
            return
        self._head_deadline = None
        if self._in_head:
            rid = request_id(None)
            log.info(
                "request head not complete in time",
                extra={"client": self.peer, "request_id": rid},
            )
            self.server.on_error("client-header-timeout")
            self.write(_plain_bytes(408, "client-header-timeout", rid))
        self.close()

    def _cancel_head_timer(self) -> None:
        self._head_deadline = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _pause(self, reason: str) -> None:
        if not self._pauses and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._pauses.add(reason)

    def _resume(self, reason: str) -> None:
        if reason in self._pauses:
            self._pauses.discard(reason)
            if not self._pauses and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def pause_reading(self) -> None:
        self._pause("body")

    def resume_reading(self) -> None:
        self._resume("body")

    def close(self) -> None:
        self._cancel_head_timer()
        if self.transport is not None and not self.closed:
            self.transport.close()  # after what is buffered has been written

    def _linger(self) -> None:
        """Close our side now, but swallow what the client still sends for a while."""
        self._stop_parsing = True
        self._current = None
        self._resume("body")
        self._resume("queue")
        transport = self.transport
        if transport is None or self.closed:
            return
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(_LINGER, self.close)
        else:
            self.close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    @property
    def idle(self) -> bool:
        return self._current is None and not self._queue and not self._in_head

    def close_if_idle(self) -> None:
        if self.idle:
            self.close()


_HTTP_11: Final = b"HTTP/1.1\r\n"
_HTTP_10: Final = b"HTTP/1.0\r\n"


def _line_version(chunk: bytes, method: bytes, url_length: int) -> str | None:
    """The version a request line ends with, when ``chunk`` begins with that line;
    None when it cannot be told this way (the parser is asked instead).

    Why: ``get_http_version()`` formats a string per request (2,200 instructions).
    Why it is safe: llhttp accepted the line, which is method SP target SP version
    CRLF, at least ``len(method) + url_length + 2 + 10`` bytes; extra spaces make it
    longer, never shorter. So the ten bytes at that offset end in CRLF only if the
    line has exactly that layout, and then they are its version. A head preceded by
    empty lines does not begin with the method's first byte.
    """
    if not chunk or chunk[0] != method[0]:
        return None
    at = len(method) + url_length + 2
    tail = chunk[at : at + 10]
    if tail == _HTTP_11:
        return "1.1"
    if tail == _HTTP_10:
        return "1.0"
    return None


def _split_target(raw_url: bytes) -> tuple[str, str, str]:
    """A request target's path, query, and the two as the upstream gets them: as the
    client encoded them, less a fragment (never sent, RFC 9110 §7.1) and the scheme
    and authority of an absolute form (they may not choose the upstream)."""
    try:
        url = httptools.parse_url(raw_url)
    except httptools.HttpParserInvalidURLError:
        raw = raw_url.decode(*ENCODING)
        return raw, "", raw  # refused by the proxy
    # httptools' stub says bytes; either part may be None.
    parts: Any = url
    raw_path = parts.path.decode(*ENCODING) if parts.path else ""
    query = parts.query.decode(*ENCODING) if parts.query else ""
    # parse_url says None for an empty query too, but "/p?" is not "/p" (RFC 3986
    # §6.2.3 keeps an empty component's delimiter): the first "?" before any "#"
    # starts a query, since neither a path nor an authority may hold one.
    mark = raw_url.find(b"?")
    fragment = raw_url.find(b"#")
    if mark != -1 and (fragment == -1 or mark < fragment):
        return raw_path, query, raw_path + "?" + query
    return raw_path, query, raw_path


# What RFC 9112 §4 does not allow in a reason phrase (HTAB, SP, VCHAR and obs-text only).
_UNFIT_REASON: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _status_and_fields(status: int, reason: str, headers: CIMultiDict[str]) -> list[str]:
    if _UNFIT_REASON.search(reason) is not None:
        reason = ""  # as in _status_line
    lines = [f"HTTP/1.1 {status} {reason or reason_phrase(status)}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    return lines


# Status lines for the standard reason phrases, ready to write; any other is built.
_STATUS_LINES: Final = {
    (code, phrase): f"HTTP/1.1 {code} {phrase}\r\n".encode()
    for code in range(100, 600)
    if (phrase := reason_phrase(code))
}


# The same by status alone, for the standard phrase (a tuple key cost 1,000 instructions).
_STANDARD_LINES: Final[dict[int, tuple[str, bytes]]] = {
    code: (phrase, line) for (code, phrase), line in _STATUS_LINES.items()
}


def _status_line(status: int, reason: str) -> bytes:
    standard = _STANDARD_LINES.get(status)
    if standard is not None and (not reason or reason == standard[0]):
        return standard[1]
    if _UNFIT_REASON.search(reason) is not None:
        # llhttp lets a NUL or another control character through in an upstream's
        # phrase. It carries no meaning (clients ignore it, RFC 9112 §4 expects
        # intermediaries to overwrite it), so the standard one goes out instead of a
        # status line a strict client would refuse.
        reason = ""
    line = _STATUS_LINES.get((status, reason or reason_phrase(status)))
    if line is None:
        line = f"HTTP/1.1 {status} {reason or reason_phrase(status)}\r\n".encode(*ENCODING)
    return line


def _plain(status: int, reason: str) -> Response:
    headers = CIMultiDict({"Content-Type": "text/plain; charset=utf-8", "X-Rampart-Reason": reason})
    return Response(status, headers, (reason + "\n").encode())


def _plain_bytes(status: int, reason: str, rid: str) -> bytes:
    """An answer of the server's own, before any request was parsed: like every
    answer, it carries an X-Request-ID (``rid``, also in the log line)."""
    body = (reason + "\n").encode()
    return (
        f"HTTP/1.1 {status} {reason_phrase(status)}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"X-Rampart-Reason: {reason}\r\n"
        f"X-Request-ID: {rid}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class ProxyServer:
    """The protocol factory for ``loop.create_server``, and the connections it made."""

    def __init__(
        self, handler: Handler, settings: ServerSettings, on_error: Callable[[str], None]
    ) -> None:
        self.handler = handler
        self.on_error = on_error
        # Typed here: compiled, the settings are Any (their module is not), and an
        # attribute of a declared type is native: a header count compared per field.
        self.idle_timeout: float = float(settings.idle_timeout)
        self.max_header_bytes: int = settings.max_header_bytes
        self.max_header_fields: int = settings.max_header_fields
        self.max_head_bytes = self.max_header_bytes * _HEAD_LIMIT_FACTOR
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self.date = _HttpDate()
        self._closed_one: asyncio.Future[None] | None = None

    def __call__(self) -> HttpConnection:
        return HttpConnection(self)

    def start_draining(self) -> None:
        """Answer what is in flight with ``Connection: close``; close idle connections now."""
        self.draining = True
        for connection in list(self.connections):
            connection.close_if_idle()

    def forget(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        if self._closed_one is not None and not self._closed_one.done():
            self._closed_one.set_result(None)

    async def shutdown(self, timeout: float) -> None:
        """Close every connection, giving busy ones up to ``timeout`` to finish.

        Draining, each closes itself once its answer is sent.
        """
        self.start_draining()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while self.connections:
                    self._closed_one = loop.create_future()
                    await self._closed_one
        except TimeoutError:
            pass
        for connection in list(self.connections):
            connection.abort()
