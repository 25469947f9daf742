"""What an analysis endpoint says reaches status and Events only bounded and without secrets.

#22 item 4: ``canary.analysis.prometheus.url`` is the resource author's, so the
"Prometheus" may be anything; its answer must not write pages (or terminal
escapes) into status, and the URL's credentials must not be shown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from rampart_operator.analysis.prometheus import PrometheusProvider
from rampart_operator.analysis.provider import ProviderError


@contextlib.asynccontextmanager
async def endpoint(answer: web.Response) -> AsyncIterator[int]:
    async def handle(_: web.Request) -> web.Response:
        return answer

    app = web.Application()
    app.router.add_get("/api/v1/query", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def failure_of(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ProviderError) as raised:
            await PrometheusProvider(session, url, timeout=5).query("up")
    return str(raised.value)


async def test_what_the_endpoint_says_is_one_bounded_printable_line():
    flood = "line one\nline two\x1b[31m" + "x" * 10_000
    answer = web.json_response({"status": "error", "error": flood})
    async with endpoint(answer) as port:
        said = await failure_of(f"http://analyst:hunter2@127.0.0.1:{port}")
    assert len(said) < 320
    assert said.isprintable()
    assert "line one line two" in said
    assert "hunter2" not in said
    assert "analyst" not in said
    assert f"127.0.0.1:{port}/api/v1/query" in said


async def test_an_endpoint_that_is_not_there_is_named_without_its_credentials():
    async with endpoint(web.Response(text="")) as port:
        pass  # closed: nothing listens on the port any more
    said = await failure_of(f"http://analyst:hunter2@127.0.0.1:{port}")
    assert "hunter2" not in said
    assert said.startswith(f"http://127.0.0.1:{port}/api/v1/query: ")


async def test_a_page_that_is_not_json_is_refused_briefly():
    async with endpoint(web.Response(text="<html>" + "y" * 50_000)) as port:
        said = await failure_of(f"http://127.0.0.1:{port}")
    assert len(said) < 320
