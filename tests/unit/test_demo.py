"""The demo application's broken-release switch, which the e2e canary scenarios rely on."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rampart_sidecar.demo import STREAMS, build_app
from tests.conftest import async_wait_until


@pytest.mark.parametrize(("error_rate", "status"), [(0.0, 200), (1.0, 503)])
async def test_every_route_fails_at_the_error_rate(error_rate: float, status: int) -> None:
    async with TestClient(TestServer(build_app(error_rate))) as client:
        for path in ("/", "/slow?ms=1", "/flaky?p=0"):
            response = await client.get(path)
            assert response.status == status, path


async def test_an_events_client_leaving_is_no_error(caplog: pytest.LogCaptureFixture) -> None:
    app = build_app()
    runner = web.AppRunner(app)  # served as run_app serves it (a TestServer hides this)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events?every=0.01 HTTP/1.1\r\nHost: demo\r\n\r\n")
        while b"data: tick 0" not in await reader.readline():
            pass
        writer.close()  # the client leaves mid-stream
        # The next tick finds the connection gone: the handler ends, quietly.
        await async_wait_until(lambda: not app[STREAMS], timeout=5)
    finally:
        await runner.cleanup()
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


async def test_an_outage_fails_every_route_for_its_seconds() -> None:
    async with TestClient(TestServer(build_app())) as client:
        assert (await client.post("/outage?seconds=60")).status == 200
        for path in ("/", "/slow?ms=1", "/flaky?p=0"):
            assert (await client.get(path)).status == 503, path
        assert (await client.post("/outage?seconds=0")).status == 200
        assert (await client.get("/")).status == 200


async def test_flaky_fails_exactly_the_first_n_calls_of_a_key() -> None:
    async with TestClient(TestServer(build_app())) as client:
        statuses = [(await client.get("/flaky?fail=2&key=unit")).status for _ in range(4)]
    assert statuses == [503, 503, 200, 200]


@pytest.mark.parametrize(
    "path", ["/slow?ms=soon", "/slow?ms=-1", "/flaky?p=2", "/flaky?fail=x", "/events?every=0"]
)
async def test_a_bad_number_is_a_400_saying_which(path: str) -> None:
    async with TestClient(TestServer(build_app())) as client:
        response = await client.get(path)
        assert response.status == 400
        name = path.split("?")[1].split("=")[0]
        assert (await response.text()).startswith(f"{name}: a number from")
