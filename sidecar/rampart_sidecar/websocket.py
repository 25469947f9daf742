"""WebSocket pass-through: frames are relayed both ways, untouched, for as long as both sides like.

The sidecar completes the handshake with the upstream first and offers the
client the subprotocol the upstream chose, so a refused upstream handshake
reaches the client as an HTTP error, not as a socket that closes at once.
Pings, pongs and close codes are relayed rather than answered here, so the
two ends see each other's keep-alive and close semantics.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

if TYPE_CHECKING:
    from .proxy import Exchange, Proxy

__all__ = ["is_websocket_upgrade", "relay_websocket"]

_HANDSHAKE_FIELDS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Protocol",
)
_WebSocket = web.WebSocketResponse | aiohttp.ClientWebSocketResponse


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    return request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket"


async def relay_websocket(
    proxy: Proxy, request: web.BaseRequest, exchange: Exchange
) -> web.StreamResponse:
    url = proxy.upstream_url(request)
    url = url.with_scheme("wss" if url.scheme == "https" else "ws")
    headers = proxy.upstream_headers(request, exchange)
    for name in _HANDSHAKE_FIELDS:
        headers.popall(name, None)
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    protocols = [p.strip() for p in offered.split(",") if p.strip()]
    try:
        async with asyncio.timeout(exchange.route.request_timeout):
            upstream = await proxy.session.ws_connect(
                url,
                headers=headers,
                protocols=protocols,
                autoclose=False,
                autoping=False,
                max_msg_size=0,
            )
    except aiohttp.WSServerHandshakeError as error:
        status = error.status if 400 <= error.status < 500 else 502
        return proxy._local(exchange, status, "websocket-handshake-refused")
    except TimeoutError:
        return proxy._local(exchange, 504, "request-timeout")
    except (aiohttp.ClientError, OSError):
        return proxy._local(exchange, 502, "upstream-connect-failure")

    downstream = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (),
        autoclose=False,
        autoping=False,
        max_msg_size=0,
    )
    try:
        await downstream.prepare(request)
        exchange.status = 101
        exchange.headers_sent = monotonic()
        to_upstream = asyncio.create_task(_pump(downstream, upstream))
        to_client = asyncio.create_task(_pump(upstream, downstream))
        try:
            done, _ = await asyncio.wait(
                {to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (to_upstream, to_client):
                task.cancel()
            await asyncio.gather(to_upstream, to_client, return_exceptions=True)
        finished = done.pop()
        try:
            code, message = finished.result()
        except (aiohttp.ClientError, OSError, RuntimeError):
            code, message = WSCloseCode.GOING_AWAY, b""
        # Close the side that did not hang up first, with the code the other gave;
        # then answer the side that did (aiohttp does not wait for a reply there).
        first, second = (
            (upstream, downstream) if finished is to_upstream else (downstream, upstream)
        )
        await first.close(code=code, message=message)
        await second.close(code=code, message=message)
    finally:
        if not upstream.closed:
            await upstream.close(code=WSCloseCode.GOING_AWAY)
    return downstream


async def _pump(source: _WebSocket, sink: _WebSocket) -> tuple[int, bytes]:
    """Relay frames until ``source`` closes; return the close code and reason to pass on."""
    while True:
        message = await source.receive()
        kind = message.type
        if kind is WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif kind is WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif kind is WSMsgType.PING:
            await sink.ping(message.data)
        elif kind is WSMsgType.PONG:
            await sink.pong(message.data)
        elif kind is WSMsgType.CLOSE:
            return message.data, (message.extra or "").encode()
        else:  # CLOSING, CLOSED, ERROR: the source is gone without a close frame
            return WSCloseCode.GOING_AWAY, b""
