"""Each policy proven against a real sidecar process and a real upstream."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.conftest import async_wait_until, free_port
from tests.upstream import Upstream

pytestmark = pytest.mark.integration

NO_RETRIES = {"attempts": 0}


async def test_slow_upstream_gets_504_at_the_configured_timeout(start_sidecar, upstream):
    sidecar = start_sidecar(
        {
            "timeouts": {
                "request": "5s",
                "routes": [{"name": "quick", "pathPrefix": "/delay", "request": "150ms"}],
            },
            "retries": NO_RETRIES,
        },
        upstream.url,
    )
    async with aiohttp.ClientSession() as client:
        started = time.monotonic()
        async with client.get(sidecar.url + "/delay?ms=3000") as r:
            elapsed = time.monotonic() - started
            assert r.status == 504
            assert r.headers["X-Rampart-Reason"] == "request-timeout"
        # The route's 150 ms, not the default 5 s (nor the upstream's 3 s answer): the
        # bounds are seconds apart, so a slow machine cannot blur them.
        assert 0.15 <= elapsed < 2.5
        async with client.get(sidecar.url + "/delay?ms=100") as r:
            assert r.status == 200  # under the route timeout: served
    assert sidecar.metric("rampart_timeouts_total") == 1
    assert (
        sidecar.metric(
            "rampart_http_request_duration_seconds_count", method="GET", code="504", route="quick"
        )
        == 1
    )


async def test_flaky_get_is_retried_and_succeeds_while_post_is_not(start_sidecar, upstream):
    sidecar = start_sidecar(
        {
            "retries": {
                "attempts": 2,
                "retryOn": ["gateway-error"],
                "backoff": {"base": "10ms", "max": "50ms"},
            }
        },
        upstream.url,
    )
    async with aiohttp.ClientSession() as client:
        async with client.get(sidecar.url + "/flaky/get?fail=2") as r:
            assert r.status == 200
            assert await r.text() == "recovered\n"
        async with client.post(sidecar.url + "/flaky/post?fail=2", data=b"order") as r:
            assert r.status == 503  # the upstream's own answer, passed on
            assert "X-Rampart-Reason" not in r.headers
    assert upstream.hits["/flaky/get"] == 3
    assert upstream.hits["/flaky/post"] == 1
    assert sidecar.metric("rampart_retries_total") == 2


async def test_retries_stop_at_the_attempt_limit(start_sidecar, upstream):
    sidecar = start_sidecar(
        {
            "retries": {"attempts": 2, "backoff": {"base": "1ms", "max": "2ms"}},
            "circuitBreaker": {"consecutiveFailures": 0},
        },
        upstream.url,
    )
    async with (
        aiohttp.ClientSession() as client,
        client.get(sidecar.url + "/flaky/always?fail=100") as r,
    ):
        assert r.status == 503
    assert upstream.hits["/flaky/always"] == 3  # one try and two retries


async def test_retry_budget_caps_retries_under_load(start_sidecar, upstream):
    # 20 concurrent failing requests, a 10% budget and no floor: at most 2
    # retries may run at once, so the upstream sees far fewer than 20 * 3.
    sidecar = start_sidecar(
        {
            "retries": {
                "attempts": 2,
                "budgetPercent": 10,
                "minRetryConcurrency": 0,
                "backoff": {"base": "200ms", "max": "200ms"},
            },
            "circuitBreaker": {"consecutiveFailures": 0},
        },
        upstream.url,
    )
    async with aiohttp.ClientSession() as client:

        async def one(i: int) -> int:
            async with client.get(sidecar.url + f"/flaky/b{i}?fail=100") as r:
                return r.status

        statuses = await asyncio.gather(*(one(i) for i in range(20)))
    assert statuses == [503] * 20
    retries = sidecar.metric("rampart_retries_total")
    assert 1 <= retries <= 8, retries
    assert upstream.total_hits("/flaky/b") == 20 + retries


async def test_dead_upstream_opens_the_breaker_which_closes_after_recovery(start_sidecar):
    port = free_port()  # nothing listens here yet
    sidecar = start_sidecar(
        {
            "retries": NO_RETRIES,
            "circuitBreaker": {"consecutiveFailures": 3, "openFor": "1s", "halfOpenRequests": 2},
        },
        f"http://127.0.0.1:{port}",
    )
    async with aiohttp.ClientSession() as client:
        for _ in range(3):
            async with client.get(sidecar.url + "/echo") as r:
                assert r.status == 502
                assert r.headers["X-Rampart-Reason"] == "upstream-connect-failure"
        assert sidecar.metric("rampart_circuit_state") == 2

        upstream = Upstream(port)  # the application comes back...
        upstream.start()
        try:
            # ...but while the breaker is open no request reaches it, and refusals are fast.
            for _ in range(10):
                started = time.monotonic()
                async with client.get(sidecar.url + "/echo") as r:
                    assert r.status == 503
                    assert r.headers["X-Rampart-Reason"] == "circuit-open"
                    assert 1 <= int(r.headers["Retry-After"]) <= 1
                assert time.monotonic() - started < 0.05
            assert upstream.total_hits() == 0

            async def served() -> bool:
                async with client.get(sidecar.url + "/echo") as r:
                    return r.status == 200

            await async_wait_until(served, timeout=5, interval=0.1)
            # Half-open admits two trials; once both succeed the breaker closes.
            async with client.get(sidecar.url + "/echo") as r:
                assert r.status == 200
            assert sidecar.metric("rampart_circuit_state") == 0
            assert sidecar.metric("rampart_rejected_total", reason="circuit-open") >= 10
        finally:
            upstream.close()


async def test_failing_trial_reopens_the_breaker(start_sidecar, upstream):
    sidecar = start_sidecar(
        {
            "retries": NO_RETRIES,
            "circuitBreaker": {"consecutiveFailures": 2, "openFor": "300ms", "halfOpenRequests": 1},
        },
        upstream.url,
    )
    async with aiohttp.ClientSession() as client:
        for _ in range(2):
            async with client.get(sidecar.url + "/status/500") as r:
                assert r.status == 500
        await async_wait_until(lambda: sidecar.metric("rampart_circuit_state") == 1, timeout=3)
        async with client.get(sidecar.url + "/status/500") as r:
            assert r.status == 500  # the trial went through and failed
        async with client.get(sidecar.url + "/status/500") as r:
            assert r.status == 503
            assert r.headers["X-Rampart-Reason"] == "circuit-open"
    assert upstream.hits["/status/500"] == 3


async def test_concurrency_limit_queues_then_refuses(start_sidecar, upstream):
    sidecar = start_sidecar(
        {"concurrency": {"maxInFlight": 2, "maxQueued": 1}, "timeouts": {"request": "5s"}},
        upstream.url,
    )
    async with aiohttp.ClientSession() as client:

        async def one() -> tuple[int, str | None, float]:
            started = time.monotonic()
            async with client.get(sidecar.url + "/delay?ms=1500") as r:
                return r.status, r.headers.get("X-Rampart-Reason"), time.monotonic() - started

        results = await asyncio.gather(*(one() for _ in range(6)))
    served = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    assert len(served) == 3  # two in flight and one queued
    assert len(refused) == 3
    assert all(reason == "concurrency-limit" for _, reason, _ in refused)
    # Refused at once, not queued: a queued request waits 1.5 s for the first slot.
    assert all(elapsed < 1.0 for _, _, elapsed in refused)
    assert max(elapsed for _, _, elapsed in served) >= 2.9  # the queued one waited its turn
    assert sidecar.metric("rampart_rejected_total", reason="concurrency-limit") == 3


async def test_rate_limit_by_client_ip(start_sidecar, upstream):
    sidecar = start_sidecar(
        {"rateLimit": {"requestsPerSecond": 2, "burst": 5, "key": "client-ip"}}, upstream.url
    )
    async with aiohttp.ClientSession() as client:
        statuses = []
        for _ in range(8):
            async with client.get(sidecar.url + "/echo") as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert r.headers["X-Rampart-Reason"] == "rate-limited"
                    assert int(r.headers["Retry-After"]) >= 1
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429] * 3
    assert upstream.hits["/echo"] == 5


async def test_rate_limit_by_header_keeps_keys_apart(start_sidecar, upstream):
    sidecar = start_sidecar(
        {"rateLimit": {"requestsPerSecond": 1, "burst": 2, "key": "header:X-Api-Key"}},
        upstream.url,
    )
    async with aiohttp.ClientSession() as client:

        async def status(key: str) -> int:
            async with client.get(sidecar.url + "/echo", headers={"X-Api-Key": key}) as r:
                return r.status

        assert [await status("alice") for _ in range(3)] == [200, 200, 429]
        assert [await status("bob") for _ in range(2)] == [200, 200]
