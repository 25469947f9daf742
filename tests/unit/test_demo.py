"""The demo application's broken-release switch, which the e2e canary scenarios rely on."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from rampart_sidecar.demo import build_app


@pytest.mark.parametrize(("error_rate", "status"), [(0.0, 200), (1.0, 503)])
async def test_every_route_fails_at_the_error_rate(error_rate: float, status: int) -> None:
    async with TestClient(TestServer(build_app(error_rate))) as client:
        for path in ("/", "/slow?ms=1", "/flaky?p=0"):
            response = await client.get(path)
            assert response.status == status, path
