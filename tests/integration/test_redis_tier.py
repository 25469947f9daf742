"""The Redis tier against a real Redis, under the event loop the sidecar runs (uvloop)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from rampart_common.sidecar_settings import RedisCacheSettings
from rampart_sidecar.cache.redis import RedisBackend
from tests.conftest import async_wait_until

pytestmark = pytest.mark.integration

ROUNDS = 36


def test_marking_redis_down_with_lookups_in_flight_fails_none_of_them(redis_server) -> None:
    """Marking Redis down starts a reconnect that drops the pool's connections, while
    lookups are still connecting on them: each must come back a miss, never raise (under
    uvloop, a write to a transport closed under it raises RuntimeError)."""

    async def lookups_through_reconnects() -> list[object]:
        backend = RedisBackend(RedisCacheSettings(timeout=1.0), redis_server.url)
        await backend.start()
        outcomes: list[object] = []
        try:
            for turns in range(ROUNDS):
                await async_wait_until(lambda: backend.available, what="redis up")
                lookups = [asyncio.create_task(backend.get(f"key{n}")) for n in range(48)]
                # A few turns of the loop, more each round, so the reconnect meets the
                # lookups at every stage: queued for a connection, connecting, sending.
                for _ in range(turns % 12):
                    await asyncio.sleep(0)
                backend._fail("marked down by the test")
                outcomes += await asyncio.gather(*lookups, return_exceptions=True)
        finally:
            await backend.close()
        return outcomes

    outcomes = uvloop.run(lookups_through_reconnects())
    assert len(outcomes) == ROUNDS * 48
    assert [o for o in outcomes if o is not None] == []
