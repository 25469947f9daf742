"""The proxy listener's HTTP/1.1 server, driven by raw sockets: the corners no HTTP client shows.

The integration tests run the whole sidecar against real clients; these pin
what only hand-written bytes reach: pipelining, Expect: 100-continue,
HTTP/1.0, the head deadline and size limits, a client that vanishes, a
handler that fails, draining, and a connection taken over by an Upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from multidict import CIMultiDict

from rampart_common.sidecar_settings import ServerSettings
from rampart_sidecar.flow import HIGH_WATER, BodyBuffer
from rampart_sidecar.headers import ResponseHead
from rampart_sidecar.messages import Request, Response, StreamResponse
from rampart_sidecar.server import ProxyServer
from tests.conftest import async_wait_until

Handler = Callable[[Request], Awaitable["Response | StreamResponse"]]


class Listener:
    def __init__(self, server: ProxyServer, port: int) -> None:
        self.server = server
        self.port = port
        self.errors: list[str] = []

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def listening(handler: Handler, **settings: Any) -> AsyncIterator[Listener]:
    """A server on a free port; afterwards, fails if a protocol callback ever raised."""
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    uncaught: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: uncaught.append(context))
    server = ProxyServer(handler, ServerSettings(**settings), on_error=errors.append)
    listener = await loop.create_server(server, "127.0.0.1", 0)
    served = Listener(server, listener.sockets[0].getsockname()[1])
    served.errors = errors
    try:
        yield served
    finally:
        listener.close()
        await server.shutdown(timeout=0.5)
        loop.set_exception_handler(previous)
    assert not uncaught, uncaught


async def read_response(reader: asyncio.StreamReader) -> tuple[int, CIMultiDict[str], bytes]:
    """One response: status, headers and body (by Content-Length, chunks, or until close)."""
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = CIMultiDict(line.split(": ", 1) for line in lines[1:] if line)
        if status < 200 or status in (204, 304):
            return status, headers, b""
        if "Content-Length" in headers:
            body = await reader.readexactly(int(headers["Content-Length"]))
        elif headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                body += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        else:
            body = await reader.read()
    return status, headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(5):
        try:
            return await reader.read() == b""
        except ConnectionResetError:
            return True


async def echo_path(request: Request) -> Response:
    return Response(200, CIMultiDict({"X-Path": request.target}), request.target.encode())


async def test_pipelined_requests_are_answered_in_order():
    delays = {"/a": 0.05, "/b": 0.0, "/c": 0.02}

    async def slow_then_fast(request: Request) -> Response:
        await asyncio.sleep(delays[request.raw_path])  # the first finishes last if run at once
        return await echo_path(request)

    async with listening(slow_then_fast) as served:
        reader, writer = await served.connect()
        writer.write(
            b"".join(b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % p for p in (b"a", b"b", b"c"))
        )
        bodies = [(await read_response(reader))[2] for _ in range(3)]
        writer.close()
    assert bodies == [b"/a", b"/b", b"/c"]


async def test_garbage_after_a_good_request_closes_after_its_answer():
    async with listening(echo_path) as served:
        reader, writer = await served.connect()
        writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\x00\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"/ok")
        assert headers["Connection"] == "close"
        assert await closed(reader)  # no 400 written into the middle of the stream
        writer.close()
    assert served.errors == ["bad-request"]


async def test_after_garbage_the_server_lingers_instead_of_resetting_a_client_still_sending():
    """Closing at once meets what the client still sends with a reset, and many clients
    that see their write fail never read the answer waiting for them: the server shuts
    its side and swallows what comes for a while, as it does for an unread body."""

    def client(port: int) -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\x00\r\n\r\n")
            answer = b""
            while not answer.endswith(b"/ok") and (chunk := sock.recv(4096)):
                answer += chunk
            try:
                # Closed, the server's side answers the first with a reset, which
                # fails one of the sends after it.
                for _ in range(100):
                    sock.sendall(b"still sending")
                return answer, sock.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                return answer, b"reset"

    async with listening(echo_path) as served:
        answer, after = await asyncio.to_thread(client, served.port)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in answer
    assert after == b""  # the end of the stream, not a reset
    assert served.errors == ["bad-request"]


async def test_expect_continue_is_answered_only_when_the_body_is_read():
    async def reads_body(request: Request) -> Response:
        assert request.content is not None
        return Response(200, body=await request.content.read())

    async def refuses(request: Request) -> Response:
        return Response(413, body=b"too large\n")

    head = b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    async with listening(reads_body) as served:
        reader, writer = await served.connect()
        writer.write(head)
        assert (await read_response(reader))[0] == 100  # before any body byte was sent
        writer.write(b"hello")
        assert (await read_response(reader))[::2] == (200, b"hello")
        writer.close()
    async with listening(refuses) as served:
        reader, writer = await served.connect()
        writer.write(head)
        status, headers, _ = await read_response(reader)
        assert status == 413  # no 100 first: the client need not send the body at all
        assert headers["Connection"] == "close"  # its body would be the next "request"
        writer.close()


async def test_http_10_keep_alive_only_when_asked_and_streams_end_with_the_connection():
    async def streamed(request: Request) -> StreamResponse:
        response = StreamResponse(200, CIMultiDict())
        await response.prepare(request)
        await response.write(b"part one, ")
        await response.write(b"part two")
        await response.write_eof()
        return response

    async with listening(echo_path) as served:
        reader, writer = await served.connect()
        writer.write(b"GET /kept HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert headers["Connection"] == "keep-alive"
        writer.write(b"GET /then-closed HTTP/1.0\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert (status, body, headers["Connection"]) == (200, b"/then-closed", "close")
        assert await closed(reader)
        writer.close()
    async with listening(streamed) as served:
        reader, writer = await served.connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert headers["Transfer-Encoding"] == "chunked"
        assert body == b"part one, part two"
        writer.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert "Transfer-Encoding" not in headers  # HTTP/1.0 has no chunks...
        assert body == b"part one, part two"  # ...so the body ends with the connection
        writer.close()


async def test_head_answers_keep_the_announced_length_and_send_no_body():
    async def head_answer(request: Request) -> Response:
        if request.raw_path == "/chunked":  # the upstream gave no length
            return Response(200)
        return Response(200, CIMultiDict({"Content-Length": "1234"}))

    async with listening(head_answer) as served:
        reader, writer = await served.connect()
        writer.write(
            b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /chunked HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        async with asyncio.timeout(5):
            heads = [await reader.readuntil(b"\r\n\r\n") for _ in range(3)]
        writer.close()
    assert b"Content-Length: 1234\r\n" in heads[0]
    assert b"Content-Length" not in heads[1]  # no length known: none claimed, not 0
    assert heads[2].startswith(b"HTTP/1.1 200 OK\r\n")  # right after: no body in between


async def test_status_lines_keep_the_reason_given_and_each_field_goes_once():
    relayed = ResponseHead(
        [(b"Date", b"Mon, 01 Jan 2024 00:00:00 GMT"), (b"X-App", b"1"), (b"Content-Length", b"1")]
    )
    answers = {
        "/custom": Response(200, reason="Fine"),
        "/standard": Response(404),
        "/unknown": Response(299),
        "/relayed": Response(200, None, b"x", "OK", relayed, b"X-Request-ID: abc\r\n"),
        "/mixed": Response(200, CIMultiDict({"X-Mine": "2"}), own=b"X-Request-ID: def\r\n"),
        # An upstream's phrase llhttp let through: a control character is never written.
        "/control": Response(200, reason="Fi\x00ne"),
        "/obs-text": Response(200, reason="Fine \udcbe\tright"),
    }

    async def answer(request: Request) -> Response:
        return answers[request.raw_path]

    async with listening(answer) as served:
        reader, writer = await served.connect()
        writer.write(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in answers))
        async with asyncio.timeout(5):
            heads = []
            for _ in answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                heads.append(head.split(b"\r\n"))
        writer.close()
    custom, standard, unknown, relayed_head, mixed, control, obs_text = heads
    assert (custom[0], standard[0], unknown[0], control[0], obs_text[0]) == (
        b"HTTP/1.1 200 Fine",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 299 ",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 Fine \xbe\tright",  # obs-text and HTAB are allowed, and kept
    )
    for head in heads:  # exactly one of each, whoever set it
        names = [line.split(b":")[0].lower() for line in head[1:] if line]
        assert (names.count(b"date"), names.count(b"content-length")) == (1, 1), head
    assert b"Date: Mon, 01 Jan 2024 00:00:00 GMT" in relayed_head
    assert {b"X-App: 1", b"X-Request-ID: abc", b"Content-Length: 1"} <= set(relayed_head)
    assert {b"X-Mine: 2", b"X-Request-ID: def", b"Content-Length: 0"} <= set(mixed)


async def test_a_slow_head_gets_408_and_an_idle_connection_is_closed_quietly():
    async with listening(echo_path, idle_timeout=0.3) as served:
        reader, writer = await served.connect()
        writer.write(b"GET /slow HTTP/1.1\r\nHo")
        status, headers, body = await read_response(reader)
        assert (status, body) == (408, b"client-header-timeout\n")
        assert len(headers["X-Request-ID"]) >= 16  # like every answer
        assert await closed(reader)
        writer.close()

        reader, writer = await served.connect()
        writer.write(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        assert await closed(reader)  # kept alive, then closed when idle, with nothing sent
        writer.close()
    assert served.errors == ["client-header-timeout"]


@pytest.mark.parametrize(
    "head",
    [
        b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 900) for i in range(12)),
        b"GET / HTTP/1.1\r\nX-Endless: " + b"d" * 20_000,  # never ends: bounded all the same
        # complete, and every field within the limit, but too many of them
        b"GET / HTTP/1.1\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"e" * 900) for i in range(12))
        + b"\r\n",
    ],
    ids=["request-line", "one-field", "whole-head", "unfinished-field", "whole-head-complete"],
)
async def test_heads_over_the_limits_get_414_or_431(head):
    async with listening(echo_path, max_header_bytes=1024) as served:
        reader, writer = await served.connect()
        writer.write(head)
        status, headers, _ = await read_response(reader)
        writer.close()
        if head.startswith(b"GET /a"):
            assert (status, headers["X-Rampart-Reason"]) == (414, "uri-too-long")
        else:
            assert (status, headers["X-Rampart-Reason"]) == (431, "header-too-large")
        assert headers["X-Request-ID"]
        reader, writer = await served.connect()
        writer.write(b"GET /fine HTTP/1.1\r\nHost: x\r\n" + b"X-Ok: ok\r\n" * 20 + b"\r\n")
        assert (await read_response(reader))[0] == 200
        writer.close()


async def test_a_client_that_goes_away_cancels_its_request():
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def forever(request: Request) -> Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with listening(forever) as served:
        _, writer = await served.connect()
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.wait_for(started.wait(), 5)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), 5)
        await async_wait_until(lambda: not served.server.connections, timeout=5)


async def test_a_failing_handler_gets_500_and_the_server_goes_on():
    async def fails(request: Request) -> Response:
        if request.raw_path == "/boom":
            raise RuntimeError("handler bug")
        return await echo_path(request)

    async with listening(fails) as served:
        reader, writer = await served.connect()
        writer.write(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert (status, headers["X-Rampart-Reason"]) == (500, "internal-error")
        assert await closed(reader)
        writer.close()
        reader, writer = await served.connect()
        writer.write(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        writer.close()
    assert served.errors == ["internal-error"]


async def test_draining_closes_idle_connections_and_says_close_on_the_last_answers():
    release = asyncio.Event()

    async def waits(request: Request) -> Response:
        if request.raw_path == "/wait":
            await release.wait()
        return await echo_path(request)

    async with listening(waits) as served:
        idle_reader, idle_writer = await served.connect()
        idle_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await read_response(idle_reader)
        busy_reader, busy_writer = await served.connect()
        busy_writer.write(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
        await async_wait_until(lambda: any(not c.idle for c in served.server.connections))
        served.server.start_draining()
        assert await closed(idle_reader)
        release.set()
        status, headers, _ = await read_response(busy_reader)
        assert (status, headers["Connection"]) == (200, "close")
        assert await closed(busy_reader)
        idle_writer.close()
        busy_writer.close()


async def test_an_upgrade_can_take_the_connection_over_with_the_bytes_after_its_head():
    async def tunnel(request: Request) -> StreamResponse:
        connection = request.connection
        client = connection.take_over()
        connection.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\n\r\n")
        while data := await client.read(1024):
            connection.write(data.upper())
        connection.close()
        response = StreamResponse(101, CIMultiDict())
        response.prepared = True
        return response

    async with listening(tunnel) as served:
        reader, writer = await served.connect()
        writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: upgrade\r\n\r\nfirst"
        )
        async with asyncio.timeout(5):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
            assert await reader.readexactly(5) == b"FIRST"
            writer.write(b" then more")
            assert await reader.readexactly(10) == b" THEN MORE"
        writer.write_eof()
        assert await closed(reader)
        writer.close()


async def test_body_buffer_pauses_the_sender_and_bounds_each_wait():
    calls: list[str] = []

    class Source:
        def pause_reading(self) -> None:
            calls.append("pause")

        def resume_reading(self) -> None:
            calls.append("resume")

    body = BodyBuffer(asyncio.get_running_loop(), Source())
    body.feed(b"x" * HIGH_WATER)
    assert calls == []
    body.feed(b"y")
    assert calls == ["pause"]  # over the mark: the socket stops being read
    assert len(await body.readany()) == HIGH_WATER + 1
    assert calls == ["pause", "resume"]
    with pytest.raises(TimeoutError):
        await body.readany(timeout=0.05)
    body.feed(b"late")
    body.finish()
    assert await body.read(timeout=0.05) == b"late"
    assert await body.readany() == b""


async def test_an_answer_sent_before_the_body_was_read_reaches_a_client_still_sending():
    async def refuses(request: Request) -> Response:
        return Response(413, CIMultiDict({"X-Rampart-Reason": "body-too-large"}))

    def client(port: int) -> bytes:
        """A blocking client that sends its whole body before it reads, as many do."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8000000\r\n\r\n")
            with contextlib.suppress(OSError):
                sock.sendall(b"z" * 8_000_000)
            try:
                return sock.recv(4096)
            except ConnectionResetError:
                return b"reset"

    async with listening(refuses) as served:
        # Neither waiting for the body nor resetting the connection will do: the
        # answer must arrive whole while the client is still sending.
        answer = await asyncio.to_thread(client, served.port)
    assert answer.startswith(b"HTTP/1.1 413 ")


PIPELINE = (
    b"GET /one?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
    b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    b"PUT /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    b"GET /four HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 300 + b"\r\n\r\n"
)


async def echo_request(request: Request) -> Response:
    body = await request.content.read() if request.content is not None else b""
    return Response(
        200, body=request.method.encode() + b" " + request.target.encode() + b" " + body
    )


@pytest.mark.parametrize("seed", range(12))
async def test_how_the_bytes_are_split_never_changes_the_answers(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(PIPELINE)), rng.randint(1, 60)))
    if seed == 0:
        cuts = list(range(1, len(PIPELINE)))  # one byte at a time
    pieces = [PIPELINE[a:b] for a, b in zip([0, *cuts], [*cuts, len(PIPELINE)], strict=True)]
    async with listening(echo_request) as served:
        reader, writer = await served.connect()
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        bodies = [(await read_response(reader))[2] for _ in range(4)]
        writer.close()
    assert bodies == [b"GET /one?x=1 ", b"POST /two hello", b"PUT /three abcdefg", b"GET /four "]
    assert served.errors == []


async def test_mangled_requests_get_an_answer_or_a_close_never_an_internal_error():
    rng = random.Random(7)
    valid = PIPELINE[: PIPELINE.index(b"PUT")]

    def mangle() -> bytes:
        mangled = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(mangled))
            action = rng.random()
            if action < 0.4:
                mangled[position] = rng.randrange(256)
            elif action < 0.7:
                del mangled[position]
            else:
                mangled[position:position] = bytes([rng.randrange(256)]) * rng.randint(1, 9)
        return bytes(mangled)

    async def send(payload: bytes) -> list[int]:
        """The statuses answered before the server closed or went quiet for a while."""
        reader, writer = await served.connect()
        writer.write(payload)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(1.5):
                while data := await reader.read(65536):
                    received += data
        writer.close()
        return [
            int(line.split(b" ")[1])
            for line in received.split(b"\r\n")
            if line.startswith(b"HTTP/1.1 ")
        ]

    async with listening(echo_request, idle_timeout=1.0) as served:
        answers = await asyncio.gather(*(send(mangle()) for _ in range(150)))
        reader, writer = await served.connect()
        writer.write(b"GET /still-serving HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await read_response(reader))[2] == b"GET /still-serving "
        writer.close()
    statuses = [status for statuses in answers for status in statuses]
    # 400 mostly; 505 for a version mangled into "HTTP/2.0", 501 for a mangled coding
    assert set(statuses) <= {200, 400, 408, 414, 431, 501, 505}, statuses
    assert statuses.count(400) > 50  # most mangling is caught by the parser...
    assert statuses.count(200) > 20  # ...some still parses: the server served it
    assert "internal-error" not in served.errors


# Request lines and fields in the layouts that decide what the server reads without
# asking llhttp (the version from the raw line, keep-alive and upgrade from the fields):
# empty lines first, pipelined behind another request or a body, a target that looks
# like a version, Connection and Proxy-Connection, Upgrade with and without its token.
LAYOUTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\r\n\r\nGET /lead HTTP/1.0\r\n\r\n",
    b"GET /HTTP/1.1 HTTP/1.0\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nconnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUPGRADE: h2c\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
]


def parsed_by_llhttp(data: bytes) -> list[tuple[str, bool, bool]]:
    """(version, keep-alive, upgrade) of each request in ``data``, asked of llhttp itself."""
    import httptools

    seen: list[tuple[str, bool, bool]] = []

    class Recorder:
        def on_headers_complete(self) -> None:
            seen.append(
                (parser.get_http_version(), parser.should_keep_alive(), parser.should_upgrade())
            )

    parser = httptools.HttpRequestParser(Recorder())
    with contextlib.suppress(httptools.HttpParserUpgrade):
        parser.feed_data(data)
    return seen


@pytest.mark.parametrize("data", LAYOUTS)
@pytest.mark.parametrize("split", [None, 1, 5, 17])
async def test_version_keep_alive_and_upgrade_are_what_llhttp_says(data, split):
    expected = parsed_by_llhttp(data)
    assert expected, "the layout itself must parse"
    seen: list[tuple[str, bool, bool]] = []

    async def record(request: Request) -> Response:
        seen.append((request.version, request.keep_alive, request.upgrade))
        return Response(200, None, b"ok")

    async with listening(record) as served:
        reader, writer = await served.connect()
        for piece in (data,) if split is None else (data[:split], data[split:]):
            writer.write(piece)
            await writer.drain()
        for _ in expected:
            await read_response(reader)
        writer.close()
    assert seen == expected
    assert served.errors == []
