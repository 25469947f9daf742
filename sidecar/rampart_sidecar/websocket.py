"""WebSocket pass-through: once both handshakes are done, bytes are relayed both ways, untouched.

The client's handshake goes to the upstream on a connection of its own (never
a pooled one: it will not come back). Only when the upstream answers
``101 Switching Protocols`` does the client get that answer, so a refused
handshake reaches the client as an HTTP error, not as a socket that closes at
once. After that the sidecar relays bytes, not frames: pings, pongs, close
codes, extensions and subprotocols are the two ends' business, and neither
the request timeout nor the idle timeout applies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

import httptools
from multidict import CIMultiDict

from .messages import Request, Response, StreamResponse
from .upstream import ENCODING

if TYPE_CHECKING:
    from .proxy import Exchange, Proxy

__all__ = ["is_websocket_upgrade", "relay_websocket"]

_MAX_HEAD = 64 * 1024
_BUFFER = 64 * 1024


def is_websocket_upgrade(request: Request) -> bool:
    return (
        request.upgrade
        and request.method == "GET"
        and request.headers.get("Upgrade", "").lower() == "websocket"
    )


class _Handshake:
    """llhttp's callbacks for the upstream's answer to the handshake."""

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.reason = ""
        self.complete = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode(*ENCODING)  # in pieces when split across reads

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode(*ENCODING), value.decode(*ENCODING)))

    def on_headers_complete(self) -> None:
        self.complete = True


async def relay_websocket(
    proxy: Proxy, request: Request, exchange: Exchange
) -> Response | StreamResponse:
    pool = proxy.pool
    upgrade = request.headers["Upgrade"].encode(*ENCODING)
    fields = proxy.upstream_fields(request, exchange) + b"Connection: Upgrade\r\n"
    fields += b"Upgrade: " + upgrade + b"\r\n"
    try:
        async with asyncio.timeout(exchange.route.request_timeout):
            reader, writer = await asyncio.open_connection(
                pool.host,
                pool.port,
                ssl=pool.ssl,
                server_hostname=pool.host if pool.ssl else None,
                limit=_BUFFER,
            )
            try:
                writer.write(pool.request_head("GET", request.target, fields))
                status, reason, answer, rest = await _read_handshake(reader)
            except BaseException:
                writer.close()
                raise
    except TimeoutError:
        return proxy.local(exchange, 504, "request-timeout")
    except (OSError, ValueError, httptools.HttpParserError):
        return proxy.local(exchange, 502, "upstream-connect-failure")

    if status != 101:
        writer.close()
        return proxy.local(
            exchange, status if 400 <= status < 500 else 502, "websocket-handshake-refused"
        )
    connection = request.connection
    client = connection.take_over()
    answer["X-Request-ID"] = exchange.request_id
    connection.write_head(101, reason, answer)
    exchange.status = 101
    exchange.headers_sent = monotonic()
    if rest:
        connection.write(rest)
    to_upstream = asyncio.create_task(_pump(client, writer.write, writer.drain))
    to_client = asyncio.create_task(_pump(reader, connection.write, connection.drain))
    try:
        await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (to_upstream, to_client):
            task.cancel()
        await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        writer.close()
        connection.close()
    switched = StreamResponse(101, answer, reason)
    switched.prepared = True  # written already: nothing left for the server to send
    return switched


async def _read_handshake(
    reader: asyncio.StreamReader,
) -> tuple[int, str, CIMultiDict[str], bytes]:
    """The upstream's status, reason and headers, and any bytes that came after them."""
    callbacks = _Handshake()
    parser: Any = httptools.HttpResponseParser(callbacks)
    received = 0
    while True:
        data = await reader.read(_BUFFER)
        if not data:
            raise ConnectionResetError("the upstream closed during the handshake")
        received += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            rest = data[upgrade.args[0] :]
            break
        if callbacks.complete:
            rest = b""
            break
        if received > _MAX_HEAD:
            raise ValueError("handshake answer too large")
    return parser.get_status_code(), callbacks.reason, CIMultiDict(callbacks.headers), rest


async def _pump(
    source: asyncio.StreamReader,
    write: Callable[[bytes], object],
    drain: Callable[[], Awaitable[None]],
) -> None:
    """Relay bytes until ``source`` ends or either side breaks."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(_BUFFER):
            write(data)
            await drain()
