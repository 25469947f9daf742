"""What crosses the proxy: methods, paths, headers, bodies, streams, WebSockets."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.conftest import async_wait_until
from tests.upstream import Upstream, pattern

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_path_query_and_body_reach_the_upstream(start_sidecar, upstream, method):
    sidecar = start_sidecar({}, upstream.url)
    body = b"" if method in ("GET", "OPTIONS") else b'{"order": 42}'
    async with (
        aiohttp.ClientSession() as client,
        client.request(
            method, sidecar.url + "/echo?q=a%20b&x=1&x=2", data=body or None
        ) as response,
    ):
        assert response.status == 200
        seen = await response.json()
    assert seen["method"] == method
    assert seen["path"] == "/echo"
    assert seen["raw_path"] == "/echo?q=a%20b&x=1&x=2"
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()


async def test_hop_by_hop_headers_are_dropped_both_ways(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            sidecar.url + "/echo",
            headers={
                "Connection": "keep-alive, X-Private-Hop",
                "X-Private-Hop": "secret",
                "Keep-Alive": "timeout=30",
                "TE": "trailers",
                "Proxy-Connection": "keep-alive",
                "X-End-To-End": "kept",
                "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            },
        ) as response,
    ):
        seen = (await response.json())["headers"]
        # The upstream's own hop-by-hop fields must not reach the client either.
        assert "X-Hop" not in response.headers
        assert "Keep-Alive" not in response.headers
        assert response.headers["X-Upstream"] == "yes"
    names = {name.lower() for name in seen}
    assert not names & {"x-private-hop", "keep-alive", "te", "proxy-connection"}
    assert seen["X-End-To-End"] == "kept"
    assert seen["traceparent"] == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert seen["X-Forwarded-For"] == "127.0.0.1"


async def test_forwarded_for_chains_are_joined_and_extended(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    sent = [("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-For", "10.0.0.2, 10.0.0.3")]
    async with (
        aiohttp.ClientSession() as client,
        client.get(sidecar.url + "/echo", headers=CIMultiDict(sent)) as response,
    ):
        seen = (await response.json())["header_list"]
    chains = [value for name, value in seen if name.lower() == "x-forwarded-for"]
    assert chains == ["10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"]


async def test_an_empty_post_keeps_its_zero_length(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    async with (
        aiohttp.ClientSession() as client,
        client.post(sidecar.url + "/echo", data=b"") as response,
    ):
        seen = (await response.json())["headers"]
    assert seen["Content-Length"] == "0"
    assert "Transfer-Encoding" not in seen


async def test_request_id_is_passed_on_or_generated(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    async with aiohttp.ClientSession() as client:
        async with client.get(sidecar.url + "/echo", headers={"X-Request-ID": "abc-123"}) as r:
            assert (await r.json())["headers"]["X-Request-ID"] == "abc-123"
            # One id per response: the upstream's own is not relayed beside it.
            assert r.headers.getall("X-Request-ID") == ["abc-123"]
        async with client.get(sidecar.url + "/echo") as r:
            generated = (await r.json())["headers"]["X-Request-ID"]
            assert len(generated) == 32
            assert r.headers.getall("X-Request-ID") == [generated]
        # An id with spaces or control bytes would poison logs: replaced.
        async with client.get(sidecar.url + "/echo", headers={"X-Request-ID": "a b"}) as r:
            assert (await r.json())["headers"]["X-Request-ID"] != "a b"


async def test_no_headers_are_invented_and_no_cookies_are_kept(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        for _ in range(2):  # /echo sets a cookie; a second request must not carry it
            async with client.get(sidecar.url + "/echo", skip_auto_headers=["User-Agent"]) as r:
                seen = (await r.json())["headers"]
                assert r.headers["Set-Cookie"] == "session=abc"
    assert "Cookie" not in seen
    assert "User-Agent" not in seen


async def test_large_bodies_stream_both_ways(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    upload = os.urandom(5 * 1024 * 1024)

    async def chunks():
        for start in range(0, len(upload), 100_000):
            yield upload[start : start + 100_000]

    async with aiohttp.ClientSession() as client:
        async with client.post(sidecar.url + "/upload", data=chunks()) as r:
            assert await r.json() == {
                "sha256": hashlib.sha256(upload).hexdigest(),
                "length": len(upload),
            }
        async with client.post(sidecar.url + "/upload", data=upload) as r:
            assert (await r.json())["length"] == len(upload)
        async with client.get(sidecar.url + "/bytes?n=3000000") as r:
            assert r.status == 200
            assert await r.read() == pattern(3_000_000)


async def test_head_keeps_the_upstream_content_length(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    async with aiohttp.ClientSession() as client:
        async with client.get(sidecar.url + "/status/200") as r:
            length = len(await r.read())
        async with client.head(sidecar.url + "/status/200") as r:
            assert r.status == 200
            assert int(r.headers["Content-Length"]) == length


async def test_server_sent_events_outlive_the_request_and_idle_timeouts(start_sidecar, upstream):
    sidecar = start_sidecar({"timeouts": {"request": "300ms", "idle": "300ms"}}, upstream.url)
    received = []
    upstream.sse_sent.clear()
    async with (
        aiohttp.ClientSession() as client,
        client.get(sidecar.url + "/sse?every=0.5&n=4") as r,
    ):
        assert r.headers["Content-Type"] == "text/event-stream"
        async for line in r.content:
            if line.startswith(b"data:"):
                received.append((line.strip(), time.monotonic()))
    assert [data for data, _ in received] == [b"data: 0", b"data: 1", b"data: 2", b"data: 3"]
    # Events arrive as they are sent, not in one lump at the end: each one reached
    # the client before the upstream wrote the next (however slow the machine).
    sent = upstream.sse_sent
    assert len(sent) == 4
    for (_, arrived), next_sent in zip(received, sent[1:], strict=False):
        assert arrived < next_sent


async def test_websocket_upgrade_passes_through(start_sidecar, upstream):
    sidecar = start_sidecar({"timeouts": {"request": "300ms", "idle": "300ms"}}, upstream.url)
    async with (
        aiohttp.ClientSession() as client,
        client.ws_connect(sidecar.url.replace("http", "ws") + "/ws", protocols=["chat"]) as ws,
    ):
        assert ws.protocol == "chat"
        await ws.send_str("hello")
        assert (await ws.receive_json()) == {"echo": "hello", "protocol": "chat"}
        # Silent for longer than both timeouts (300 ms): the socket must stay up.
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        await async_wait_until(lambda: loop.time() >= quiet_since + 0.8, timeout=2)
        assert not ws.closed
        await ws.send_bytes(b"\x00\x01binary")
        assert (await ws.receive_bytes()) == b"\x00\x01binary"
        await ws.send_str("close-please")
        closing = await ws.receive()
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert closing.data == 4001  # the upstream's close code, relayed


async def test_upstream_pool_reuses_connections_and_closes_them_when_idle(
    start_sidecar, upstream: Upstream
):
    sidecar = start_sidecar({"upstream": {"idleTimeout": "300ms"}}, upstream.url)
    async with aiohttp.ClientSession() as client:
        for _ in range(20):
            async with client.get(sidecar.url + "/echo") as r:
                assert r.status == 200
    # Twenty requests in a row need one pooled connection, not twenty...
    assert len(upstream.peers) == 1
    assert upstream.open_connections() == 1
    # ...which the sidecar closes itself once idle (the upstream would wait 75 s).
    started = time.monotonic()
    await async_wait_until(lambda: upstream.open_connections() == 0, timeout=5)
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize(("path", "expected"), [("/status/403", 403), ("/echo", 502)])
async def test_a_refused_websocket_handshake_reaches_the_client_as_http(
    start_sidecar, upstream, path, expected
):
    sidecar = start_sidecar({}, upstream.url)
    async with aiohttp.ClientSession() as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(sidecar.url.replace("http", "ws") + path)
        assert refused.value.status == expected  # a 4xx as is; anything else but 101 is a 502
        async with client.get(sidecar.url + "/echo") as r:
            assert r.status == 200  # and the sidecar serves on
    assert sidecar.metric("rampart_rejected_total", reason="websocket-handshake-refused") == 1
