"""The upstream pool against scripted servers: the HTTP/1.1 corners a real application may show.

Each server here answers with exact bytes, so the cases the integration
tests' upstream never produces (100 Continue, a body ended by closing, a
HEAD announcing a length, garbage) are pinned down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from rampart_common.sidecar_settings import UpstreamSettings
from rampart_sidecar.upstream import UpstreamClosed, UpstreamConnectError, UpstreamPool
from tests.conftest import async_wait_until, free_port

HOST = b"Host: app\r\n"  # header fields, encoded, as the proxy hands them over

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Scripted:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []


@contextlib.asynccontextmanager
async def serving(serve: Script) -> AsyncIterator[UpstreamPool]:
    """A server running ``serve`` for each connection, and a pool to it."""
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = UpstreamPool(UpstreamSettings(url=f"http://127.0.0.1:{port}", idle_timeout=5.0))
    try:
        yield pool
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def scripted(
    answer: Callable[[bytes], bytes], close_after: bool = False
) -> AsyncIterator[tuple[UpstreamPool, Scripted]]:
    """A server answering each request head with ``answer(head)``; and a pool to it."""
    seen = Scripted()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                seen.requests.append(head)
                writer.write(answer(head))
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async with serving(serve) as pool:
        yield pool, seen


async def get(pool: UpstreamPool, method: str = "GET", path: str = "/") -> tuple[int, bytes]:
    response = await pool.request(method, path, HOST)
    try:
        return response.status, await response.read()
    finally:
        response.release()


async def test_informational_responses_are_skipped_for_the_real_one() -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    async with scripted(lambda _: reply) as (pool, _):
        assert await get(pool) == (201, b"ok")


async def test_a_body_without_length_ends_with_the_connection_which_is_not_reused() -> None:
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    async with scripted(lambda _: reply, close_after=True) as (pool, seen):
        assert await get(pool) == (200, b"until the end")
        assert await get(pool) == (200, b"until the end")
        assert seen.connections == 2


async def test_head_does_not_wait_for_the_announced_body_and_the_connection_is_reused() -> None:
    def answer(head: bytes) -> bytes:
        if head.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

    async with scripted(answer) as (pool, seen):
        async with asyncio.timeout(2):
            assert await get(pool, "HEAD") == (200, b"")
            assert await get(pool, "GET") == (200, b"hello")
            assert await get(pool, "HEAD") == (200, b"")
        assert seen.connections == 1
        assert [r.split(b" ")[0] for r in seen.requests] == [b"HEAD", b"GET", b"HEAD"]


async def test_chunked_bodies_are_decoded_and_keep_alive_holds() -> None:
    reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    async with scripted(lambda _: reply) as (pool, seen):
        for _ in range(3):
            assert await get(pool) == (200, b"abcde")
        assert seen.connections == 1


async def test_garbage_is_a_broken_connection_not_a_crash() -> None:
    async with scripted(lambda _: b"SMTP ready\r\n\r\n") as (pool, _):
        with pytest.raises(UpstreamClosed):
            await get(pool)


async def test_nothing_listening_is_a_connect_error() -> None:
    pool = UpstreamPool(UpstreamSettings(url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(UpstreamConnectError):
        await get(pool)
    await pool.close()


async def test_the_connection_limit_makes_requests_wait_for_a_free_connection() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    async with scripted(lambda _: reply) as (pool, seen):
        pool.limit = 1
        first = await pool.request("GET", "/", HOST)
        second = asyncio.create_task(get(pool))
        await async_wait_until(lambda: pool.waiting == 1)  # for the only connection
        assert await first.read() == b"x"
        first.release()
        assert await second == (200, b"x")
        assert seen.connections == 1


async def test_a_large_body_arrives_whole_through_back_pressure() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB, eight times the high-water mark
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    async with scripted(lambda _: reply) as (pool, _):
        response = await pool.request("GET", "/", HOST)
        parts = []
        while chunk := await response.content.readany():
            parts.append(chunk)
            await asyncio.sleep(0)  # a slow reader
        response.release()
        assert b"".join(parts) == body


async def test_a_streamed_request_body_goes_chunked_without_a_length() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    received = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readuntil(b"0\r\n\r\n")
        received.set_result((head, body))
        writer.write(reply)
        await writer.drain()
        writer.close()

    async def body() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    async with serving(serve) as pool:
        response = await pool.request("POST", "/upload", HOST, body())
        assert await response.read() == b""
        response.release()
    head, sent = await received
    assert b"Transfer-Encoding: chunked" in head
    assert sent == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"


async def test_a_request_cancelled_just_as_its_turn_came_passes_the_turn_on() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    async with scripted(lambda _: reply) as (pool, _):
        pool.limit = 1
        first = await pool.request("GET", "/", HOST)
        await first.read()
        second = asyncio.create_task(get(pool))
        third = asyncio.create_task(get(pool))
        await async_wait_until(lambda: pool.waiting == 2)  # both, for the only connection
        first.release()  # the second's turn...
        second.cancel()  # ...which it gives up before it runs
        async with asyncio.timeout(2):
            assert await third == (200, b"x")
        assert second.cancelled()


async def test_an_idle_connection_closes_after_the_idle_timeout_counted_from_its_last_use():
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with scripted(lambda _: reply) as (pool, seen):
        pool.idle_timeout = 0.4
        loop = asyncio.get_running_loop()
        assert await get(pool) == (200, b"ok")
        first_use = loop.time()
        # Used again before its first timer fires: that timer must not close it.
        await async_wait_until(lambda: loop.time() >= first_use + 0.25)
        assert await get(pool) == (200, b"ok")
        await async_wait_until(lambda: loop.time() > first_use + 0.5)
        assert len(pool._idle) == 1
        assert await get(pool) == (200, b"ok")
        assert seen.connections == 1
        third_use = loop.time()
        await async_wait_until(lambda: not pool._idle, timeout=3)
        assert loop.time() - third_use >= 0.4


async def test_a_shorter_deadline_than_the_armed_one_still_expires_on_time():
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                if head.startswith(b"GET /fast "):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                # /silent gets no answer at all
        writer.close()

    async with serving(serve) as pool:
        # The first request arms the connection's head timer for 30 s from now...
        response = await pool.request("GET", "/fast", HOST, timeout=30)
        assert await response.read() == b"ok"
        response.release()
        # ...and the second, on the same connection, must not wait that long.
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/silent", HOST, timeout=0.3)
        assert loop.time() - started < 2


# Status lines and fields in the layouts that decide what the pool reads off the
# status line instead of asking llhttp (status, keep-alive): HTTP/1.0, Connection and
# Proxy-Connection, an interim response before the final one, a body until close.
ANSWERS = [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.1 200 OK\r\nconnection: KEEP-ALIVE\r\nContent-Length: 0\r\n\r\n", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", False),
    (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n",
        False,
    ),
    (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    (b"HTTP/1.1 299 Whatever\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\n\r\nuntil the connection closes", True),
]


def answered_by_llhttp(data: bytes) -> tuple[int, bool, str]:
    """The final response's status, keep-alive and reason phrase, asked of llhttp itself
    (fed the answer whole, so its phrase comes in one piece)."""
    import httptools

    seen: list[tuple[int, bool, str]] = []
    reasons: list[bytes] = []

    class Recorder:
        def on_status(self, reason: bytes) -> None:
            reasons.append(reason)

        def on_headers_complete(self) -> None:
            reason = reasons.pop().decode()
            seen.append((parser.get_status_code(), parser.should_keep_alive(), reason))

    parser = httptools.HttpResponseParser(Recorder())
    parser.feed_data(data)
    return next(answer for answer in seen if answer[0] >= 200)


@pytest.mark.parametrize(("answer", "close_after"), ANSWERS)
@pytest.mark.parametrize("split", [None, 1, 10, 14])
async def test_status_and_keep_alive_are_what_llhttp_says(answer, close_after, split) -> None:
    def read_first_piece() -> bool:
        # The pool's own count of the head's bytes read: the second piece is written
        # only then, so it comes in a read of its own (two writes in a row are often
        # read as one).
        return any(c.response is not None and c.response.head_bytes == split for c in pool._open)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while await reader.readuntil(b"\r\n\r\n"):
                if split is None:
                    writer.write(answer)
                else:
                    writer.write(answer[:split])
                    await async_wait_until(read_first_piece, what="the first piece read")
                    writer.write(answer[split:])
                await writer.drain()
                if close_after:
                    break
        writer.close()

    async with serving(serve) as pool:
        for _ in range(2):  # the second on the same connection, when it was kept
            response = await pool.request("GET", "/", HOST)
            try:
                await response.read()
                read = (response.status, response.keep_alive, response.reason)
                assert read == answered_by_llhttp(answer)
            finally:
                response.release()
