"""A broken or malicious application: whatever it writes, the client gets one sound answer.

The upstream here is ``tests/raw_upstream.py``, which writes exactly the bytes
a test scripts. Each case is something a buggy app (a header-injection bug, a
framework that answers twice) or a compromised one could send; none may
rewrite the answer, reach the cache, crash the sidecar or grow its memory.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.test_hostile_input import raw_exchange, status_of
from tests.raw_upstream import chunked_body_complete, raw_upstream

pytestmark = pytest.mark.integration

GET = b"GET /page HTTP/1.1\r\nHost: app.test\r\n\r\n"
CACHE = {"cache": {"memory": {"maxBytes": 1048576}}}


async def until_closed(port: int, request: bytes) -> bytes:
    """Everything the sidecar answers to ``request``, which asks it to close afterwards."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


def fields_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[0]


async def exchange_twice(port: int, request: bytes = GET) -> tuple[bytes, bytes]:
    """Two requests on one connection: the second shows what the first left behind."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        answers = []
        for _ in range(2):
            writer.write(request)
            await writer.drain()
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(
                    next(
                        (
                            line.split(b":", 1)[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        ),
                        b"0",
                    )
                )
                answers.append(head + await reader.readexactly(length))
        return answers[0], answers[1]
    finally:
        writer.close()


@pytest.mark.parametrize(
    "first",
    [
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 204 No Content\r\nCache-Control: max-age=60\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n",
    ],
    ids=["length", "204", "chunked"],
)
async def test_bytes_after_a_complete_response_never_rewrite_it(start_sidecar, first):
    """An app that answers twice in one write (a header-injection bug) gets its first answer
    relayed and cached, never the second's status and fields."""
    second = (
        b"HTTP/1.1 302 Found\r\nLocation: http://evil.test/\r\nSet-Cookie: session=evil\r\n"
        b"Cache-Control: max-age=600\r\nContent-Length: 0\r\n\r\n"
    )
    async with raw_upstream(lambda _: first + second) as app:
        sidecar = start_sidecar(CACHE, app.url)
        answer, again = await exchange_twice(sidecar.port)
        for response in (answer, again):
            assert status_of(response) == status_of(first), response
            assert b"evil" not in response
        # The connection that misbehaved was dropped: a request that reached the app
        # again (a 204 is not stored) came on a new one.
        assert app.connections == len(app.received)
    assert "Traceback" not in sidecar.logs()


async def test_a_101_to_a_plain_request_is_a_502_not_a_traceback(start_sidecar):
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: upgrade\r\n\r\n"
    async with raw_upstream(lambda _: switch + b"raw tunnel bytes") as app:
        sidecar = start_sidecar({"retries": {"attempts": 0}}, app.url)
        response = await raw_exchange(sidecar.port, GET)
    assert status_of(response) == 502
    assert b"X-Rampart-Reason: upstream-bad-response" in response
    assert b"raw tunnel" not in response
    logs = sidecar.logs()
    assert "Traceback" not in logs, logs
    assert "Fatal error" not in logs, logs


async def test_early_hints_are_forwarded_before_the_answer(start_sidecar):
    """RFC 9110 §15.2: a proxy MUST forward 1xx responses (103 Early Hints) to HTTP/1.1 clients."""
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with raw_upstream(lambda _: hints + final) as app:
        sidecar = start_sidecar({}, app.url)
        response = await until_closed(
            sidecar.port, GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
        )
        old_client = await until_closed(sidecar.port, GET.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert response.startswith(b"HTTP/1.1 103 Early Hints\r\n"), response
    interim, _, rest = response.partition(b"\r\n\r\n")
    assert b"Link: </style.css>; rel=preload" in interim
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    assert rest.endswith(b"\r\n\r\nok")
    assert old_client.startswith(b"HTTP/1.1 200 OK\r\n")  # HTTP/1.0 knows no 1xx


@pytest.mark.parametrize("interim", [False, True], ids=["final", "interim"])
async def test_a_control_character_in_a_reason_phrase_never_reaches_the_client(
    start_sidecar, interim
):
    """llhttp lets a NUL through in a status line's phrase; a strict client (h11, for one)
    would refuse the line. The phrase means nothing, so the standard one goes out, for the
    answer, for what the cache stored of it and for an interim response."""
    answer = b"HTTP/1.1 200 Fi\x00ne\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok"
    if interim:
        answer = b"HTTP/1.1 103 Ear\x01ly\r\nLink: </a.css>; rel=preload\r\n\r\n" + answer
    closing = GET.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    async with raw_upstream(lambda _: answer) as app:
        sidecar = start_sidecar(CACHE, app.url)
        first = await until_closed(sidecar.port, closing)
        cached = await until_closed(sidecar.port, closing)
    if interim:
        hints, _, first = first.partition(b"\r\n\r\n")
        assert hints == b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload"
    assert b"X-Rampart-Cache: HIT" in fields_of(cached)
    for response in (first, cached):
        assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response
        assert response.endswith(b"\r\n\r\nok")
        assert b"\x00" not in response


async def test_response_trailers_never_reach_the_cached_headers(start_sidecar):
    answer = (
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: Set-Cookie\r\n\r\n2\r\nok\r\n0\r\nSet-Cookie: session=evil\r\nX-Evil: 1\r\n\r\n"
    )
    async with raw_upstream(lambda _: answer) as app:
        sidecar = start_sidecar(CACHE, app.url)
        first, cached = await exchange_twice(sidecar.port)
    for response in (first, cached):
        assert status_of(response) == 200
        assert response.endswith(b"\r\n\r\nok")
        assert b"evil" not in response.lower()
        assert b"x-evil" not in response.lower()
    assert b"X-Rampart-Cache: HIT" in fields_of(cached)


@pytest.mark.parametrize(
    "flood",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\nok",
        b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * 2_000_000 + b"\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n"
        + b"X-T: 1\r\n" * 200_000
        + b"\r\n",
    ],
    ids=["many-fields", "endless-field", "trailer-flood"],
)
async def test_an_oversized_response_head_or_trailer_section_is_refused(start_sidecar, flood):
    async with raw_upstream(lambda _: flood) as app:
        sidecar = start_sidecar({"retries": {"attempts": 0}}, app.url)
        response = await raw_exchange(sidecar.port, GET)
    if flood.startswith(b"HTTP/1.1 200 OK\r\nTransfer-Encoding"):
        # The head was fine and went out; the flood after the body is dropped unread.
        assert status_of(response) in (200, 502)
    else:
        assert status_of(response) == 502
        assert b"X-Rampart-Reason: upstream-bad-response" in response
    assert b"X-A" not in response
    assert b"X-Endless" not in response
    assert b"X-T" not in response
    assert sidecar.proc.poll() is None


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
    ],
    ids=["gzip-chunked", "gzip"],
)
async def test_a_transfer_coding_the_proxy_cannot_relay_is_a_502(start_sidecar, answer):
    """Transfer-Encoding is hop-by-hop: relaying ``gzip, chunked`` as plain would hand the
    client compressed bytes it was never told about."""
    async with raw_upstream(lambda _: answer) as app:
        sidecar = start_sidecar({"retries": {"attempts": 0}}, app.url)
        response = await raw_exchange(sidecar.port, GET)
    assert status_of(response) == 502
    assert b"X-Rampart-Reason: upstream-bad-response" in response


async def test_request_trailers_go_upstream_only_with_a_chunked_body(start_sidecar):
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def chunked_post(size: int) -> bytes:
        body = b"".join(
            b"%x\r\n%s\r\n" % (len(part), part) for part in [b"x" * 4096] * (size // 4096)
        )
        return (
            b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n" + body + b"0\r\nX-Checksum: abc\r\nHost: evil.test\r\n"
            b"Authorization: Bearer evil\r\nCookie: session=evil\r\n\r\n"
        )

    def complete(received: bytes) -> bool:
        head = received.partition(b"\r\n\r\n")[0].lower()
        if b"transfer-encoding: chunked" in head:
            return chunked_body_complete(received)
        length = int(head.partition(b"content-length: ")[2].partition(b"\r\n")[0] or 0)
        return len(received.partition(b"\r\n\r\n")[2]) >= length

    async with raw_upstream(lambda _: ok, ready=complete) as app:
        sidecar = start_sidecar({}, app.url)
        streamed = await raw_exchange(sidecar.port, chunked_post(256 * 1024))
        buffered = await raw_exchange(sidecar.port, chunked_post(8192))
    assert status_of(streamed) == 200
    assert status_of(buffered) == 200
    streamed_request, buffered_request = app.received
    assert b"transfer-encoding: chunked" in streamed_request.lower()
    trailer_section = streamed_request.rpartition(b"\r\n0\r\n")[2]
    assert trailer_section == b"X-Checksum: abc\r\n\r\n"  # framing, routing and credentials dropped
    # A small body is buffered (for retries) and sent with a length: no place for trailers.
    assert b"content-length: 8192" in buffered_request.lower()
    assert b"X-Checksum" not in buffered_request
    assert b"evil" not in buffered_request


async def test_a_background_revalidation_reads_no_more_than_it_could_store(start_sidecar):
    """stale-while-revalidate refreshes behind the client's back; an upstream that answers
    that refresh with a body without end must be cut off at cache.maxBodyBytes, not read
    into memory for as long as it keeps sending."""
    first = (
        b'HTTP/1.1 200 OK\r\nCache-Control: max-age=0, stale-while-revalidate=60\r\nETag: "a"\r\n'
        b"Content-Length: 2\r\n\r\nok"
    )
    endless = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
    written = 0
    stopped = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"If-None-Match" not in head:
                writer.write(first)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
            writer.write(endless)
            while True:  # until the sidecar stops reading and closes
                writer.write(chunk)
                await writer.drain()
                written += len(chunk)
        except (ConnectionError, asyncio.IncompleteReadError):
            stopped.set()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sidecar = start_sidecar({"cache": {"maxBodyBytes": 100_000}}, f"http://127.0.0.1:{port}")
        assert b"X-Rampart-Cache: MISS" in await raw_exchange(sidecar.port, GET)
        assert b"X-Rampart-Cache: STALE" in await raw_exchange(sidecar.port, GET)
        async with asyncio.timeout(10):
            await stopped.wait()
    finally:
        server.close()
    assert written < 20 * 1024 * 1024  # socket buffers, not the stream's whole length
    assert sidecar.proc.poll() is None
