"""An upstream that answers with exactly the bytes a test gives it: the hostile application.

``tests/upstream.py`` is a well-behaved aiohttp server; this one writes
whatever a test scripts (two responses in one write, a 101 nobody asked for,
endless headers), which no real framework would, so the proxy's handling of a
broken or malicious application can be tested. It listens on port 0 in the
test's own event loop and keeps every byte it received, per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

__all__ = ["RawUpstream", "chunked_body_complete", "head_complete", "raw_upstream"]


def head_complete(received: bytes) -> bool:
    return b"\r\n\r\n" in received


def chunked_body_complete(received: bytes) -> bool:
    """A chunked request's last chunk and trailer section have arrived."""
    _, _, body = received.partition(b"\r\n\r\n")
    last_chunk = body.startswith(b"0\r\n") or b"\r\n0\r\n" in body
    return last_chunk and body.endswith(b"\r\n\r\n")


class RawUpstream:
    """Answers each request with ``reply(received)`` once ``ready(received)`` holds.

    ``reply`` returns the bytes to write, in one write.
    """

    def __init__(
        self,
        reply: Callable[[bytes], bytes],
        ready: Callable[[bytes], bool] = head_complete,
    ) -> None:
        self.reply = reply
        self.ready = ready
        self.received: list[bytes] = []  # each request as it arrived, the answered ones
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        pending = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                pending += data
                if not self.ready(pending):
                    continue
                self.received.append(pending)
                writer.write(self.reply(pending))
                pending = b""
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()


@contextlib.asynccontextmanager
async def raw_upstream(
    reply: Callable[[bytes], bytes],
    ready: Callable[[bytes], bool] = head_complete,
) -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream(reply, ready)
    await upstream.start()
    try:
        yield upstream
    finally:
        await upstream.close()
