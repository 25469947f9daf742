"""The sidecar's request path leaves no reference cycles behind.

The sidecar's own process runs its garbage collector rarely (``app.settle_heap``):
that is only safe while what a request allocates is freed by reference counting
the moment the request is done. A cycle (an exception kept with its traceback, a
callback holding the object it is registered on) would pile up between
collections. So each kind of exchange runs many times with the collector off, in
this process, and the garbage found afterwards must hold none of the sidecar's
objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from rampart_common.sidecar_settings import SidecarSettings
from rampart_sidecar import app
from tests.waiting import async_wait_until

pytestmark = pytest.mark.integration

ROUNDS = 60


@contextlib.asynccontextmanager
async def sidecar_here(tmp_path: Path, upstream_url: str, **settings: Any) -> AsyncIterator[int]:
    """A sidecar on this test's event loop; yields its proxy port."""
    address_file = tmp_path / "addresses.json"
    stop = asyncio.Event()
    config = SidecarSettings.model_validate(
        {
            "listen": "127.0.0.1:0",
            "admin": "127.0.0.1:0",
            "upstream": {"url": upstream_url},
            "logging": {"level": "warning", "accessLog": False},
            **settings,
        }
    )
    task = asyncio.create_task(app.serve(config, stop, address_file))
    try:
        await async_wait_until(lambda: address_file.exists() or task.done(), timeout=20)
        if task.done():
            task.result()
        proxy = json.loads(address_file.read_text())["proxy"]
        yield int(proxy.rsplit(":", 1)[1])
    finally:
        stop.set()
        await task


@contextlib.contextmanager
def sidecar_garbage() -> Iterator[Counter[str]]:
    """Counts, by type, the sidecar's objects that only the collector could free among
    what the block allocated."""
    found: Counter[str] = Counter()
    gc.collect()
    gc.disable()
    try:
        yield found
    finally:
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            for thing in gc.garbage:
                module = getattr(type(thing), "__module__", "") or ""
                if module.startswith("rampart_sidecar"):
                    found[f"{module}.{type(thing).__qualname__}"] += 1
        finally:
            gc.garbage.clear()
            gc.set_debug(0)
            gc.enable()


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    """One request on a kept-alive connection; the response head (the body is read)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        if name.strip().lower() == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return head


def get(target: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: app.test\r\n\r\n" % target.encode()


KEPT_ALIVE = {
    "cache-miss-then-hits": [get("/c/hot?cc=max-age%3D600")],
    "no-store-hit-for-pass": [get("/c/cold?cc=no-store")],
    "revalidated-304": [get("/c/etag?cc=no-cache&etag=v1")],
    "streamed-body": [get("/bytes?n=300000")],
    "upstream-error-retried": [get("/status/503")],
    "not-found": [get("/status/404")],
    "post-invalidating": [
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello",
        get("/c/hot?cc=max-age%3D600"),
    ],
    "chunked-upload": [
        b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ],
    "rate-limited": [get("/app")],
}


@pytest.mark.parametrize("kind", list(KEPT_ALIVE))
async def test_requests_leave_no_cycles(kind, tmp_path, upstream):
    settings: dict[str, Any] = {
        "cache": {"memory": {"maxEntries": 100}},
        "retries": {"attempts": 2, "perTryTimeout": "2s"},
        # open never: every 503 goes upstream, through the retry and the breaker's counts
        "circuitBreaker": {"consecutiveFailures": 1_000_000},
    }
    if kind == "rate-limited":
        # one token, then one more each 1,000 s: every request after the first is refused
        settings["rateLimit"] = {"requestsPerSecond": 0.001, "burst": 1}
    async with sidecar_here(tmp_path, upstream.url, **settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            heads = [await exchange(reader, writer, r) for r in KEPT_ALIVE[kind]]  # warm
            with sidecar_garbage() as garbage:
                for _ in range(ROUNDS):
                    heads = [await exchange(reader, writer, r) for r in KEPT_ALIVE[kind]]
        finally:
            writer.close()
            await writer.wait_closed()
    statuses = [head.split(b" ", 2)[1] for head in heads]
    expected = {
        "upstream-error-retried": [b"503"],
        "not-found": [b"404"],
        "rate-limited": [b"429"],
        "revalidated-304": [b"200"],
    }.get(kind, [b"200"] * len(statuses))
    assert statuses == expected, heads
    assert garbage == Counter(), f"cycles left by {ROUNDS} rounds of {kind}"


async def test_connections_leave_no_cycles(tmp_path, upstream):
    """Connections opened and closed, by the client or by the sidecar (a malformed request
    gets 400 and close)."""
    async with sidecar_here(tmp_path, upstream.url) as port:
        with sidecar_garbage() as garbage:
            for request in (get("/app"), b"GET /app HTTP/1.1\r\nHost: a b\r\n\r\n") * ROUNDS:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                await exchange(reader, writer, request)
                writer.close()
                await writer.wait_closed()
    assert garbage == Counter(), f"cycles left by {2 * ROUNDS} connections"
