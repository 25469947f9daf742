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
