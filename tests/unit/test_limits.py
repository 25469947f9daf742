from __future__ import annotations

import asyncio

import pytest

from rampart_common.sidecar_settings import ConcurrencySettings, RateLimitSettings
from rampart_sidecar.policies import ConcurrencyLimiter, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_burst_then_refills_at_rate():
    clock = Clock()
    limiter = RateLimiter(RateLimitSettings(requests_per_second=10, burst=3), clock)
    assert [limiter.check("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.check("a")
    assert wait == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.check("a") == 0.0
    assert limiter.check("b") == 0.0  # another key has its own bucket
    assert RateLimiter.retry_after(wait) == 1


def test_bucket_never_exceeds_burst_after_a_long_idle():
    clock = Clock()
    limiter = RateLimiter(RateLimitSettings(requests_per_second=100, burst=2), clock)
    limiter.check("a")
    clock.now += 3600
    assert [limiter.check("a") == 0.0 for _ in range(3)] == [True, True, False]


def test_keys_are_bounded():
    clock = Clock()
    limiter = RateLimiter(RateLimitSettings(requests_per_second=1, burst=1, max_keys=100), clock)
    for i in range(10_000):
        limiter.check(f"k{i}")
    assert len(limiter._buckets) == 100


def test_a_client_in_use_keeps_its_bucket_while_new_keys_come_and_go():
    clock = Clock()  # never moves: an emptied bucket stays empty unless forgotten
    limiter = RateLimiter(RateLimitSettings(requests_per_second=1, burst=1, max_keys=10), clock)
    assert limiter.check("busy") == 0.0
    for i in range(100):
        limiter.check(f"passer-by-{i}")
        assert limiter.check("busy") > 0, f"forgotten after {i + 1} other keys"


def test_burst_defaults_to_the_rate():
    assert RateLimitSettings(requests_per_second=50).bucket_size == 50
    assert RateLimitSettings(requests_per_second=0.5).bucket_size == 1


async def test_concurrency_admits_limit_queues_then_refuses():
    limiter = ConcurrencyLimiter(ConcurrencySettings(max_in_flight=2, max_queued=1))
    assert await limiter.acquire(1)
    assert await limiter.acquire(1)
    queued = asyncio.create_task(limiter.acquire(5))
    await asyncio.sleep(0)
    assert limiter.queued == 1
    assert not await limiter.acquire(5)  # queue full: refused at once
    limiter.release()
    assert await queued  # the slot passed straight to the waiter
    assert limiter.in_flight == 2


async def test_queued_request_gives_up_after_its_wait():
    limiter = ConcurrencyLimiter(ConcurrencySettings(max_in_flight=1, max_queued=5))
    assert await limiter.acquire(1)
    assert not await limiter.acquire(0.05)
    assert limiter.queued == 0
    limiter.release()
    assert limiter.in_flight == 0


async def test_cancelled_waiter_does_not_leak_a_slot():
    limiter = ConcurrencyLimiter(ConcurrencySettings(max_in_flight=1, max_queued=5))
    assert await limiter.acquire(1)
    waiter = asyncio.create_task(limiter.acquire(5))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release()
    assert limiter.in_flight == 0
    assert await limiter.acquire(0.01)


async def test_unlimited_when_zero():
    limiter = ConcurrencyLimiter(ConcurrencySettings())
    assert all([await limiter.acquire(0) for _ in range(1000)])
    assert limiter.utilization() == 0.0
