"""Malformed and hostile clients get a 4xx or a closed connection, and never stop others."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

pytestmark = pytest.mark.integration


async def raw_exchange(port: int, payload: bytes, read_timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(read_timeout):
            return await reader.read(65536)
    finally:
        writer.close()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def served(url: str) -> int:
    async with aiohttp.ClientSession() as client, client.get(url + "/echo") as r:
        return r.status


async def test_malformed_request_line_gets_400(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    for garbage in (
        b"GARBAGE\r\n\r\n",
        b"GET /x HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\r\n\r\n",
    ):
        response = await raw_exchange(sidecar.port, garbage)
        assert 400 <= status_of(response) < 500, (garbage, response[:80])
        assert b"X-Rampart-Reason: bad-request" in response
    assert await served(sidecar.url) == 200
    assert upstream.total_hits() == 1
    assert sidecar.metric("rampart_rejected_total", reason="bad-request") == 3
    assert "Traceback" not in sidecar.logs()  # one line each, no stack to flood the logs


async def test_oversized_header_gets_4xx(start_sidecar, upstream):
    sidecar = start_sidecar({"server": {"maxHeaderBytes": 4096}}, upstream.url)
    request = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert 400 <= status_of(await raw_exchange(sidecar.port, request)) < 500
    long_target = b"GET /" + b"p" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert 400 <= status_of(await raw_exchange(sidecar.port, long_target)) < 500
    assert upstream.total_hits() == 0
    assert await served(sidecar.url) == 200


async def test_absolute_form_target_cannot_redirect_the_proxy(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    request = b"GET http://169.254.169.254/echo HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n"
    response = await raw_exchange(sidecar.port, request)
    assert status_of(response) == 200
    assert upstream.last_request["path"] == "/echo"  # went to the configured upstream
    connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    assert 400 <= status_of(await raw_exchange(sidecar.port, connect)) < 500


@pytest.mark.parametrize(
    ("sent", "forwarded"),
    [
        (b"/echo?", "/echo?"),  # an empty query is still a query (RFC 3986 §6.2.3)
        (b"/echo?#top", "/echo?"),
        (b"/echo?a=1&b=%2F#top", "/echo?a=1&b=%2F"),
        (b"/echo#a?b", "/echo"),  # a "?" in the fragment starts no query
        (b"http://elsewhere/echo?", "/echo?"),
        (b"/echo", "/echo"),
    ],
)
async def test_the_target_goes_upstream_as_sent_less_its_fragment(
    start_sidecar, upstream, sent, forwarded
):
    sidecar = start_sidecar({}, upstream.url)
    request = b"GET " + sent + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert status_of(await raw_exchange(sidecar.port, request)) == 200
    assert upstream.last_request["raw_path"] == forwarded


async def test_body_over_the_limit_gets_413(start_sidecar, upstream):
    sidecar = start_sidecar({"server": {"maxRequestBodyBytes": 100_000}}, upstream.url)
    declared = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n" + b"x" * 1000
    response = await raw_exchange(sidecar.port, declared)
    assert status_of(response) == 413
    assert b"X-Rampart-Reason: body-too-large" in response

    async def chunks():
        for _ in range(30):
            yield b"y" * 10_000

    async with (
        aiohttp.ClientSession() as client,
        client.post(sidecar.url + "/upload", data=chunks()) as r,
    ):
        assert r.status == 413  # chunked, so only counting while streaming finds it
    assert await served(sidecar.url) == 200


async def test_a_client_sending_one_byte_a_second_is_cut_off(start_sidecar, upstream):
    sidecar = start_sidecar({"server": {"idleTimeout": "2s"}}, upstream.url)
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
    started = time.monotonic()
    request = b"GET /echo HTTP/1.1\r\nHost: slow\r\n\r\n"
    closed_after = None
    try:
        for index, byte in enumerate(request):
            writer.write(bytes([byte]))
            await writer.drain()
            if index == 1:
                # Others are served normally meanwhile.
                assert await served(sidecar.url) == 200
            try:
                async with asyncio.timeout(1.0):
                    data = await reader.read(1024)
            except TimeoutError:
                continue
            # The sidecar answered or closed: either way the slow client is done.
            assert data == b"" or 400 <= status_of(data) < 500
            closed_after = time.monotonic() - started
            break
    except (ConnectionResetError, BrokenPipeError):
        closed_after = time.monotonic() - started
    finally:
        writer.close()
    assert closed_after is not None
    assert closed_after < 4.0
    assert upstream.hits["/echo"] == 1  # only the well-behaved client's request


@pytest.mark.parametrize("declared", [100, 1_000_000], ids=["buffered", "streamed"])
async def test_slow_request_body_times_out_with_408(start_sidecar, upstream, declared):
    sidecar = start_sidecar(
        {"timeouts": {"idle": "500ms"}, "circuitBreaker": {"consecutiveFailures": 1}}, upstream.url
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
    try:
        head = f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n"
        writer.write(head.encode() + b"abc")
        await writer.drain()
        async with asyncio.timeout(5):
            response = await reader.read(4096)
    finally:
        writer.close()
    assert status_of(response) == 408
    assert b"X-Rampart-Reason: client-body-timeout" in response
    assert sidecar.metric("rampart_circuit_state") == 0  # the client's fault, not the upstream's


async def test_many_garbage_connections_leave_the_sidecar_serving(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    payloads = [
        b"\x00" * 100,
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost\r\n\r\n",
    ] * 10
    results = await asyncio.gather(
        *(raw_exchange(sidecar.port, p) for p in payloads), return_exceptions=True
    )
    for result in results:
        if isinstance(result, bytes) and result:
            assert 400 <= status_of(result) < 500, result[:80]
    assert sidecar.proc.poll() is None
    assert await served(sidecar.url) == 200


async def answered_at_once(port: int, payload: bytes) -> bytes:
    """The answer to ``payload``; "at once" is well inside every timeout the sidecar has."""
    return await raw_exchange(port, payload, read_timeout=5.0)


@pytest.mark.parametrize(
    ("request_bytes", "status", "reason"),
    [
        (b"GET /x HTTP/1.1\r\nHost: t.test/v1\r\n\r\n", 400, b"bad-request"),
        (b"GET /x HTTP/1.1\r\nHost: evil.test@t.test\r\n\r\n", 400, b"bad-request"),
        (b"GET /x HTTP/1.1\r\nHost: t.test:80x\r\n\r\n", 400, b"bad-request"),
        (b"GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400, b"bad-request"),
        (b"GET /x HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, b"bad-request"),
        (
            b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501,
            b"unsupported-transfer-coding",
        ),
        (
            b"POST /x HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            b"bad-request",
        ),
        (b"GET /x HTTP/2.0\r\nHost: t\r\n\r\n", 505, b"http-version-not-supported"),
        (
            b"GET /x HTTP/1.1\r\nHost: t\r\n" + b"A: b\r\n" * 10_000 + b"\r\n",
            431,
            b"header-too-large",
        ),
        (b"GET /" + b"p" * 20_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, b"uri-too-long"),
        (
            b"GET /x HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
            431,
            b"header-too-large",
        ),
    ],
    ids=[
        "host-with-path",
        "host-with-userinfo",
        "host-bad-port",
        "two-hosts",
        "no-host",
        "gzip-chunked",
        "chunked-in-http-1.0",
        "http-2.0-line",
        "ten-thousand-fields",
        "long-target",
        "long-field",
    ],
)
async def test_a_request_the_proxy_cannot_forward_faithfully_is_refused_at_once(
    start_sidecar, upstream, request_bytes, status, reason
):
    """RFC 9112 §3.2 (Host), §6.1 (transfer codings), §2.3 (version): each refused with
    its status and reason, in one log line, and nothing reaches the upstream."""
    sidecar = start_sidecar({}, upstream.url)
    response = await answered_at_once(sidecar.port, request_bytes)
    assert status_of(response) == status, response[:200]
    assert b"X-Rampart-Reason: " + reason in response
    assert upstream.total_hits() == 0
    assert sidecar.metric("rampart_rejected_total", reason=reason.decode()) == 1
    assert "Traceback" not in sidecar.logs()


async def test_an_http_1_0_request_without_host_is_still_served(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    response = await answered_at_once(sidecar.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert status_of(response) == 200
    assert upstream.last_request["headers"]["Host"] == upstream.url.removeprefix("http://")


async def test_connection_cannot_strip_host_from_the_forwarded_request(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    request = (
        b"GET /echo HTTP/1.1\r\nHost: app.test\r\nConnection: Host, X-Drop\r\nX-Drop: 1\r\n\r\n"
    )
    response = await answered_at_once(sidecar.port, request)
    assert status_of(response) == 200
    forwarded = upstream.last_request["headers"]
    assert forwarded["Host"] == "app.test"
    assert "X-Drop" not in forwarded  # the field Connection named is still dropped


BAD_CHUNKS = {
    "bad-hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "overflow": b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "junk-after-size": b"5 x\r\nhello\r\n0\r\n\r\n",
    "missing-crlf": b"5\r\nhelloXX5\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
@pytest.mark.parametrize("garbage", list(BAD_CHUNKS.values()), ids=list(BAD_CHUNKS))
async def test_a_malformed_chunked_body_gets_400_at_once(
    start_sidecar, upstream, garbage, streamed
):
    """Not a 504 after the per-try timeout nor a 408 after timeouts.idle, holding a slot:
    400 as soon as the framing breaks, not counted against the upstream."""
    sidecar = start_sidecar(
        {
            "circuitBreaker": {"consecutiveFailures": 1},
            "concurrency": {"maxInFlight": 1},
        },
        upstream.url,
    )
    # A streamed body has gone upstream in part (past retries.maxBufferedBodyBytes)
    # before the framing breaks; a buffered one has not gone at all.
    good = b"".join([b"1000\r\n" + b"x" * 4096 + b"\r\n"] * 32) if streamed else b""
    request = b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + good
    response = await answered_at_once(sidecar.port, request + garbage)
    assert status_of(response) == 400, response[:200]
    assert b"X-Rampart-Reason: bad-request" in response
    if not streamed:
        assert upstream.total_hits() == 0
    assert sidecar.metric("rampart_circuit_state") == 0  # the client's fault
    assert await served(sidecar.url) == 200  # and its concurrency slot is free again


async def test_clients_stalling_their_uploads_cannot_open_the_breaker(start_sidecar, upstream):
    """Finding: a few clients that send part of an upload and stop each got a 504 counted as
    an upstream failure, which opened the breaker for everyone."""
    sidecar = start_sidecar(
        {
            "retries": {"perTryTimeout": "300ms"},
            "circuitBreaker": {"consecutiveFailures": 2},
        },
        upstream.url,
    )
    head = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
    stalled = await asyncio.gather(
        *(answered_at_once(sidecar.port, head + b"x" * 100_000) for _ in range(4))
    )
    for response in stalled:
        assert status_of(response) == 408, response[:200]
        assert b"X-Rampart-Reason: client-body-timeout" in response
    assert sidecar.metric("rampart_circuit_state") == 0
    assert await served(sidecar.url) == 200


async def test_request_trailers_are_bounded_and_never_read_as_headers(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {"memory": {"maxBytes": 1048576}}}, upstream.url)
    flood = (
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
        + b"X-T: 1\r\n" * 200_000
        + b"\r\n"
    )
    response = await answered_at_once(sidecar.port, flood)
    assert status_of(response) == 431
    assert b"X-Rampart-Reason: header-too-large" in response
    # A trailer must not choose the variant a response is stored under (Vary): the
    # upstream never saw it, so a later request with that header is a miss.
    varying = b"GET /c/v?vary=Accept-Language&cc=max-age%3D60 HTTP/1.1\r\nHost: t\r\n"
    trailed = varying + b"Transfer-Encoding: chunked\r\n\r\n0\r\nAccept-Language: evil\r\n\r\n"
    first = await answered_at_once(sidecar.port, trailed)
    assert status_of(first) == 200
    assert b"lang=-" in first
    honest = await answered_at_once(sidecar.port, varying + b"Accept-Language: evil\r\n\r\n")
    assert b"X-Rampart-Cache: HIT" not in honest
    assert b"lang=evil" in honest
