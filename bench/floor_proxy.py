"""The floor under any Python proxy here: uvloop and llhttp, GET only, nothing else.

    python bench/floor_proxy.py LISTEN_PORT UPSTREAM_PORT

No policies, no metrics, no header handling, no error handling beyond
forgetting a closed upstream connection: only what every proxy must do (parse
the request, forward it on a pooled connection, parse the response, send it
back). ``proxy_bench.py --floor`` measures it beside nginx and the sidecar, to
show how much of the gap Python itself costs and how much our code does.
Not for use as a proxy.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import httptools
import uvloop

Done = Callable[[int, bytes], None]


class Upstream(asyncio.Protocol):
    def __init__(self, idle: list[Upstream]) -> None:
        self.idle = idle
        self.parser = httptools.HttpResponseParser(self)
        self.body: list[bytes] = []
        self.done: Done | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        done, self.done = self.done, None
        body, self.body = b"".join(self.body), []
        if self.parser.should_keep_alive():
            self.idle.append(self)
        assert done is not None
        done(self.parser.get_status_code(), body)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        # The upstream closes a keep-alive connection after its keepalive_requests.
        if self in self.idle:
            self.idle.remove(self)
        done, self.done = self.done, None
        if done is not None:
            done(502, b"")


class Client(asyncio.Protocol):
    def __init__(self, upstream: tuple[str, int], idle: list[Upstream]) -> None:
        self.upstream = upstream
        self.idle = idle
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.transport: Any = None
        self.pending: asyncio.Future[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        request = b"GET " + self.url + b" HTTP/1.1\r\nHost: upstream\r\n\r\n"
        self.url = b""
        self.pending = asyncio.ensure_future(self.forward(request))

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    async def forward(self, request: bytes) -> None:
        if self.idle:
            upstream = self.idle.pop()
        else:
            loop = asyncio.get_running_loop()
            _, upstream = await loop.create_connection(lambda: Upstream(self.idle), *self.upstream)

        def done(status: int, body: bytes) -> None:
            head = b"HTTP/1.1 %d OK\r\nContent-Length: %d\r\n\r\n" % (status, len(body))
            self.transport.write(head + body)

        upstream.done = done
        upstream.transport.write(request)


async def main(port: int, upstream_port: int) -> None:
    idle: list[Upstream] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Client(("127.0.0.1", upstream_port), idle), "127.0.0.1", port, backlog=4096
    )
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))
