"""The response cache against a real sidecar, a real upstream and a real redis-server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import async_wait_until

pytestmark = pytest.mark.integration

FRESH_MINUTE = "/c/{name}?cc=max-age%3D60"


async def get(
    client: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, str, str, aiohttp.typedefs.CIMultiDictProxy[str]]:
    async with client.get(url, **kwargs) as r:
        return r.status, r.headers.get("X-Rampart-Cache", ""), await r.text(), r.headers


async def test_hit_after_miss_then_expiry(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + "/c/ttl?cc=max-age%3D2"
    async with aiohttp.ClientSession() as client:
        status, cache, first, _ = await get(client, url)
        assert (status, cache) == (200, "MISS")
        status, cache, second, headers = await get(client, url)
        assert (status, cache) == (200, "HIT")
        assert second == first
        assert int(headers["Age"]) <= 1
        stored_at = time.monotonic()

        async def expired() -> bool:
            return (await get(client, url))[1] == "MISS"

        await async_wait_until(expired, timeout=5, interval=0.1)
        # Not before its lifetime less the age its Date gave it on arrival (under a second).
        assert time.monotonic() - stored_at >= 0.9
    assert upstream.hits["/c/ttl"] >= 2
    assert sidecar.metric("rampart_cache_requests_total", result="hit") >= 1
    assert sidecar.metric("rampart_cache_requests_total", result="miss") >= 2


@pytest.mark.parametrize(
    "query",
    [
        "cc=no-store",
        "cc=private%2C%20max-age%3D60",
        "cc=max-age%3D60&cookie=1",
        "cc=no-cache%2C%20max-age%3D60",
        "cc=max-age%3D60&vary=%2A",
        "status=206&cc=max-age%3D60",
        "cc=max-age%3D60&vary=Accept%2C%20%2A",
        "status=599&cc=must-understand%2C%20no-store%2C%20max-age%3D60",
    ],
    ids=[
        "no-store",
        "private",
        "set-cookie",
        "no-cache",
        "vary-star",
        "partial",
        "vary-star-in-list",
        "must-understand-unknown-status",
    ],
)
async def test_responses_a_shared_cache_must_not_store(start_sidecar, upstream, query):
    sidecar = start_sidecar({"cache": {"ttl": "1h"}}, upstream.url)
    url = sidecar.url + "/c/never?" + query
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        first = await get(client, url)
        second = await get(client, url)
    assert first[1] == second[1] == "MISS"
    assert first[2] != second[2]  # the upstream answered twice: #1, then #2
    assert upstream.hits["/c/never"] == 2


@pytest.mark.parametrize("mode", ["strip", "store"])
async def test_set_cookie_responses_are_stored_only_as_the_operator_chose(
    start_sidecar, upstream, mode
):
    """``cache.setCookie``: "pass" (the default) is in the test above; "strip" stores
    the response without its cookie, "store" with it (every hit hands it out)."""
    sidecar = start_sidecar({"cache": {"setCookie": mode}}, upstream.url)
    url = sidecar.url + "/c/cookie?cc=max-age%3D60&cookie=1"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        _, first_cache, first, first_headers = await get(client, url)
        _, hit_cache, hit, hit_headers = await get(client, url)
    assert (first_cache, hit_cache) == ("MISS", "HIT")
    assert hit == first
    # The client whose request went upstream gets its cookie in either mode.
    assert first_headers.getall("Set-Cookie") == ["session=1"]
    assert hit_headers.getall("Set-Cookie", []) == (["session=1"] if mode == "store" else [])
    assert upstream.hits["/c/cookie"] == 1


async def test_request_no_store_bypasses_and_no_cache_refreshes(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + FRESH_MINUTE.format(name="req")
    async with aiohttp.ClientSession() as client:
        assert (await get(client, url, headers={"Cache-Control": "no-store"}))[1] == "BYPASS"
        assert (await get(client, url))[1] == "MISS"
        assert (await get(client, url))[1] == "HIT"
        refreshed = await get(client, url, headers={"Cache-Control": "no-cache"})
        assert refreshed[1] == "MISS"
        assert (await get(client, url))[2] == refreshed[2]  # the refresh was stored
        status, cache, text, headers = await get(client, url, headers={"Range": "bytes=0-3"})
        assert (status, cache, text) == (206, "HIT", refreshed[2][:4])
        assert headers["Content-Range"] == f"bytes 0-3/{len(refreshed[2])}"
    assert upstream.hits["/c/req"] == 3


async def test_authorized_responses_are_never_served_to_others(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {"ttl": "1h"}}, upstream.url)
    private_url = sidecar.url + FRESH_MINUTE.format(name="mine")
    async with aiohttp.ClientSession() as client:
        alice = await get(client, private_url, headers={"Authorization": "Bearer alice"})
        assert "auth=Bearer alice" in alice[2]
        anonymous = await get(client, private_url)
        assert "alice" not in anonymous[2]
        bob = await get(client, private_url, headers={"Authorization": "Bearer bob"})
        assert "alice" not in bob[2]
        # ...unless the response says it is public.
        public_url = sidecar.url + "/c/shared?cc=public%2C%20max-age%3D60"
        await get(client, public_url, headers={"Authorization": "Bearer alice"})
        assert (await get(client, public_url))[1] == "HIT"


async def test_vary_variants_never_cross(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + "/c/vary?cc=max-age%3D60&vary=Accept-Language"
    async with aiohttp.ClientSession() as client:
        english = await get(client, url, headers={"Accept-Language": "en"})
        french = await get(client, url, headers={"Accept-Language": "fr"})
        assert english[1] == french[1] == "MISS"
        assert "lang=en" in english[2]
        assert "lang=fr" in french[2]
        again_fr = await get(client, url, headers={"Accept-Language": "fr"})
        again_en = await get(client, url, headers={"Accept-Language": "en"})
        none = await get(client, url)
    assert (again_fr[1], again_fr[2]) == ("HIT", french[2])
    assert (again_en[1], again_en[2]) == ("HIT", english[2])
    assert none[1] == "MISS"
    assert "lang=-" in none[2]
    assert upstream.hits["/c/vary"] == 3


async def test_key_covers_host_path_and_query(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    base = sidecar.url + "/c/key?cc=max-age%3D60"
    async with aiohttp.ClientSession() as client:
        await get(client, base)
        assert (await get(client, base + "&page=2"))[1] == "MISS"
        assert (await get(client, base, headers={"Host": "other.example"}))[1] == "MISS"
        assert (await get(client, base))[1] == "HIT"


async def test_size_limit_and_head(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {"maxBodyBytes": 2000}}, upstream.url)
    async with aiohttp.ClientSession() as client:
        for chunked in ("0", "1"):
            big = sidecar.url + f"/c/big{chunked}?cc=max-age%3D60&size=5000&chunked={chunked}"
            first, second = await get(client, big), await get(client, big)
            assert first[1] == second[1] == "MISS"
            assert len(second[2]) == 5000  # still relayed whole, just not stored
            small = sidecar.url + f"/c/small{chunked}?cc=max-age%3D60&size=1500&chunked={chunked}"
            await get(client, small)
            hit = await get(client, small)
            assert hit[1] == "HIT"
            assert len(hit[2]) == 1500

        head_url = sidecar.url + "/c/head?cc=max-age%3D60"
        async with client.head(head_url) as r:
            assert r.headers["X-Rampart-Cache"] == "MISS"
            length = r.headers["Content-Length"]
        async with client.head(head_url) as r:
            assert r.headers["X-Rampart-Cache"] == "HIT"
            assert r.headers["Content-Length"] == length
            assert await r.read() == b""
        # HEAD and GET are separate entries: a GET still needs the body.
        _status, cache, body, _ = await get(client, head_url)
        assert (cache, len(body)) == ("MISS", int(length))


async def test_default_ttl_applies_only_to_marked_routes(start_sidecar, upstream):
    sidecar = start_sidecar(
        {"cache": {"ttl": "1h", "routes": [{"pathPrefix": "/c/catalog"}]}}, upstream.url
    )
    async with aiohttp.ClientSession() as client:
        await get(client, sidecar.url + "/c/catalog")
        assert (await get(client, sidecar.url + "/c/catalog"))[1] == "HIT"
        await get(client, sidecar.url + "/c/cart")
        assert (await get(client, sidecar.url + "/c/cart"))[1] == "MISS"
        # Explicit freshness is honoured on any path.
        await get(client, sidecar.url + "/c/cart2?cc=max-age%3D60")
        assert (await get(client, sidecar.url + "/c/cart2?cc=max-age%3D60"))[1] == "HIT"
        await get(client, sidecar.url + "/c/exp?expires=60")
        assert (await get(client, sidecar.url + "/c/exp?expires=60"))[1] == "HIT"


async def test_fifty_concurrent_misses_make_one_upstream_request(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}, "concurrency": {"maxInFlight": 0}}, upstream.url)
    url = sidecar.url + "/c/herd?cc=max-age%3D60&ms=300"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as client:
        results = await asyncio.gather(*(get(client, url) for _ in range(50)))
    assert upstream.hits["/c/herd"] == 1
    assert {status for status, *_ in results} == {200}
    assert len({body for _, _, body, _ in results}) == 1
    assert sorted(cache for _, cache, _, _ in results).count("MISS") == 1


async def test_stale_if_error_inside_the_window_and_not_after(start_sidecar, upstream):
    sidecar = start_sidecar(
        {"cache": {"staleIfError": "2s"}, "retries": {"attempts": 0}}, upstream.url
    )
    url = sidecar.url + "/c/stale?cc=max-age%3D1"
    async with aiohttp.ClientSession() as client:
        original = await get(client, url)
        assert original[1] == "MISS"
        upstream.failing = True  # the upstream now answers 503

        async def served_stale() -> bool:
            status, cache, body, _ = await get(client, url)
            return status == 200 and cache == "STALE" and body == original[2]

        await async_wait_until(served_stale, timeout=5, interval=0.1)

        async def gave_up() -> bool:
            return (await get(client, url))[:2] == (503, "MISS")

        await async_wait_until(gave_up, timeout=6, interval=0.1)
    assert sidecar.metric("rampart_cache_requests_total", result="stale") >= 1


async def test_stale_answers_for_a_dead_upstream_and_an_open_breaker(start_sidecar, upstream):
    sidecar = start_sidecar(
        {
            "cache": {"staleIfError": "1m"},
            "retries": {"attempts": 0},
            "circuitBreaker": {"consecutiveFailures": 2, "openFor": "1m"},
        },
        upstream.url,
    )
    url = sidecar.url + "/c/dead?cc=max-age%3D1"
    async with aiohttp.ClientSession() as client:
        original = await get(client, url)
        upstream.stop()

        async def stale() -> bool:
            return (await get(client, url))[1] == "STALE"

        await async_wait_until(stale, timeout=5, interval=0.1)
        for _ in range(3):  # connect failures open the breaker...
            status, cache, body, _ = await get(client, url)
            assert (status, cache, body) == (200, "STALE", original[2])
        assert sidecar.metric("rampart_circuit_state") == 2
        status, cache, body, _ = await get(client, url)  # ...and stale still answers
        assert (status, cache, body) == (200, "STALE", original[2])
        # A stale 200 is an answer, not a refusal: nothing counted as rejected yet.
        assert rejected(sidecar) == 0
        assert (await get(client, sidecar.url + "/c/uncached"))[0] == 503
        assert rejected(sidecar) == 1


def rejected(sidecar: Any) -> float:
    """Every rampart_rejected_total sample, summed over its reasons."""
    return sum(
        float(line.rpartition(" ")[2])
        for line in sidecar.metrics().splitlines()
        if line.startswith("rampart_rejected_total{")
    )


async def test_cache_bust_needs_the_token(start_sidecar, upstream, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    sidecar = start_sidecar({"cache": {"adminTokenFile": str(token_file)}}, upstream.url)
    urls = [sidecar.url + FRESH_MINUTE.format(name=n) for n in ("a1", "a2", "b1")]
    async with aiohttp.ClientSession() as client:
        for url in urls:
            await get(client, url)
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            async with client.delete(sidecar.admin_url + "/cache", headers=auth) as r:
                assert r.status == 401
        assert [(await get(client, url))[1] for url in urls] == ["HIT"] * 3

        bearer = {"Authorization": "Bearer s3cret-token"}
        async with client.delete(sidecar.admin_url + "/cache?prefix=/c/a", headers=bearer) as r:
            assert r.status == 200
            assert (await r.json())["deleted"] == 2
        assert [(await get(client, url))[1] for url in urls] == ["MISS", "MISS", "HIT"]
        key = "/c/b1?cc=max-age%3D60"
        async with client.delete(
            sidecar.admin_url + "/cache", params={"key": key}, headers=bearer
        ) as r:
            assert (await r.json())["deleted"] == 1
        assert (await get(client, urls[2]))[1] == "MISS"
        async with client.delete(sidecar.admin_url + "/cache", headers=bearer) as r:
            assert (await r.json())["deleted"] >= 3
        assert [(await get(client, url))[1] for url in urls] == ["MISS"] * 3
    assert "s3cret-token" not in sidecar.logs()


async def test_cache_bust_is_off_without_a_token(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    async with (
        aiohttp.ClientSession() as client,
        client.delete(sidecar.admin_url + "/cache", headers={"Authorization": "Bearer "}) as r,
    ):
        # Off, and it says so: no token would be accepted, so none is asked for.
        assert r.status == 403
        assert "WWW-Authenticate" not in r.headers
        error = (await r.json())["error"]
        assert error.startswith("cache busting is off: no cache.adminTokenFile nor "), error


async def test_redis_is_shared_between_sidecars(start_sidecar, upstream, redis_server):
    settings = {"cache": {"redis": {"url": redis_server.url}}}
    first = start_sidecar(settings, upstream.url)
    second = start_sidecar(settings, upstream.url)
    url_path = FRESH_MINUTE.format(name="shared")
    # Replicas behind one Service see one Host; here each sidecar has its own port.
    host = {"Host": "shop.example"}
    async with aiohttp.ClientSession() as client:
        stored = await get(client, first.url + url_path, headers=host)
        assert stored[1] == "MISS"
        await async_wait_until(lambda: b"rampart:cache:" in redis_server.command("KEYS", "*"))
        other = await get(client, second.url + url_path, headers=host)
        assert (other[1], other[2]) == ("HIT", stored[2])
        async with client.get(second.admin_url + "/cache/stats") as r:
            stats = await r.json()
    assert upstream.hits["/c/shared"] == 1
    assert stats["tiers"]["redis"]["state"] == "up"
    assert stats["tiers"]["redis"]["hits"] == 1
    assert stats["tiers"]["memory"]["entries"] == 1  # promoted into memory
    assert second.metric("rampart_cache_backend_up", backend="redis") == 1


@pytest.mark.parametrize("mode", ["strip", "pass"])
async def test_a_cookie_stored_by_one_sidecar_never_reaches_another_that_does_not_store_them(
    start_sidecar, upstream, redis_server, mode
):
    """A canary with ``setCookie: store`` shares the Redis with stable pods that do not:
    what they read from it carries no cookie."""
    redis = {"url": redis_server.url}
    storing = start_sidecar({"cache": {"redis": redis, "setCookie": "store"}}, upstream.url)
    other = start_sidecar({"cache": {"redis": redis, "setCookie": mode}}, upstream.url)
    url_path = "/c/shared-cookie?cc=max-age%3D60&cookie=1"
    host = {"Host": "shop.example"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        stored = await get(client, storing.url + url_path, headers=host)
        assert stored[3].getall("Set-Cookie") == ["session=1"]
        await async_wait_until(lambda: b"rampart:cache:" in redis_server.command("KEYS", "*"))
        assert (await get(client, storing.url + url_path, headers=host))[3].getall(
            "Set-Cookie"
        ) == ["session=1"]  # its own hits hand the cookie out
        _, cache, body, headers = await get(client, other.url + url_path, headers=host)
    assert (cache, body) == ("HIT", stored[2])  # the entry is shared...
    assert headers.getall("Set-Cookie", []) == []  # ...its cookie is not
    assert upstream.hits["/c/shared-cookie"] == 1


async def test_redis_killed_mid_stream_fails_nothing_and_comes_back(
    start_sidecar, upstream, redis_server
):
    sidecar = start_sidecar({"cache": {"redis": {"url": redis_server.url}}}, upstream.url)
    hot = sidecar.url + FRESH_MINUTE.format(name="hot")
    failures: list[object] = []
    results: list[str] = []
    async with aiohttp.ClientSession() as client:
        await get(client, hot)

        async def stream(worker: int) -> None:
            for i in range(60):
                url = hot if i % 2 else sidecar.url + FRESH_MINUTE.format(name=f"w{worker}-{i}")
                try:
                    status, cache, _, _ = await get(client, url)
                except aiohttp.ClientError as error:
                    failures.append(error)
                    continue
                if status != 200:
                    failures.append(status)
                results.append(cache)
                await asyncio.sleep(0.01)

        workers = asyncio.gather(*(stream(w) for w in range(4)))
        await async_wait_until(lambda: len(results) > 40)
        redis_server.kill()
        await workers
        assert failures == []
        assert results.count("HIT") >= 100  # the hot key kept hitting, from memory
        await async_wait_until(
            lambda: sidecar.metric("rampart_cache_backend_up", backend="redis") == 0, timeout=5
        )

        redis_server.start()
        back = time.monotonic()
        await async_wait_until(
            lambda: sidecar.metric("rampart_cache_backend_up", backend="redis") == 1, timeout=5
        )
        assert time.monotonic() - back < 5
        await get(client, sidecar.url + FRESH_MINUTE.format(name="after"))
        await async_wait_until(lambda: b"after" in redis_server.command("KEYS", "*"), timeout=5)
    assert sidecar.metric("rampart_cache_backend_errors_total", backend="redis") >= 1


async def test_a_slow_redis_costs_at_most_its_timeout(start_sidecar, upstream, redis_server):
    sidecar = start_sidecar(
        {"cache": {"redis": {"url": redis_server.url, "timeout": "50ms"}}}, upstream.url
    )
    async with aiohttp.ClientSession() as client:
        await get(client, sidecar.url + "/c/warm?cc=max-age%3D60")
        blocker = asyncio.create_task(
            asyncio.to_thread(redis_server.command, "DEBUG", "SLEEP", "4")
        )
        # Measure only once Redis really is stuck in DEBUG SLEEP.
        await async_wait_until(lambda: not redis_server.answers(within=0.05), timeout=2)
        started = time.monotonic()
        for i in range(10):
            status, cache, _, _ = await get(client, sidecar.url + f"/c/slow{i}?cc=max-age%3D60")
            assert (status, cache) == (200, "MISS")
        elapsed = time.monotonic() - started
        await blocker
    # Ten requests while Redis sleeps 4 s: each gives up on it after 50 ms, so they
    # are done long before it wakes (waiting on it would take the whole 4 s).
    assert elapsed < 3.0
    assert sidecar.metric("rampart_cache_backend_errors_total", backend="redis") >= 1


async def test_stats_and_metrics(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + FRESH_MINUTE.format(name="stats")
    async with aiohttp.ClientSession() as client:
        for _ in range(4):
            await get(client, url)
        await get(client, url, headers={"Cache-Control": "no-store"})
        async with client.get(sidecar.admin_url + "/cache/stats") as r:
            stats = await r.json()
    assert stats["requests"] == {"hit": 3, "miss": 1, "stale": 0, "bypass": 1, "revalidated": 0}
    assert stats["hitRatio"] == 0.75
    assert stats["tiers"]["memory"]["entries"] == 1
    assert stats["tiers"]["memory"]["bytes"] > 0
    assert "redis" not in stats["tiers"]
    text = sidecar.metrics()
    for series in (
        'rampart_cache_requests_total{result="hit"} 3.0',
        'rampart_cache_entries{tier="memory"} 1.0',
        'rampart_cache_backend_up{backend="memory"} 1.0',
    ):
        assert series in text, series
    assert "rampart_cache_bytes" in text


async def test_unsafe_requests_invalidate_what_they_change(start_sidecar, upstream):
    """RFC 9111 §4.4: a non-error answer to POST, PUT, DELETE invalidates the target, and the
    same-host targets its Location and Content-Location name; an error answer and another
    host's location invalidate nothing."""
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    paths = {name: FRESH_MINUTE.format(name=name) for name in ("doc", "loc", "cloc", "other")}
    host = {"Host": "shop.example"}
    async with aiohttp.ClientSession() as client:

        async def states() -> dict[str, str]:
            return {
                name: (await get(client, sidecar.url + path, headers=host))[1]
                for name, path in paths.items()
            }

        assert set((await states()).values()) == {"MISS"}
        assert set((await states()).values()) == {"HIT"}

        target = sidecar.url + paths["doc"]
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            async with client.request(method, target, headers=host) as r:
                assert r.status == 200
            assert (await get(client, target, headers=host))[1] == "MISS", method
            assert (await get(client, target, headers=host))[1] == "HIT", method

        # An error changed nothing: the entry stays.
        async with client.post(target + "&status=500", headers=host) as r:
            assert r.status == 500
        async with client.post(sidecar.url + "/status/503", headers=host) as r:
            assert r.status == 503
        assert (await states())["doc"] == "HIT"

        # Location and Content-Location on the same host go too; another host's stay.
        query = {
            "location": paths["loc"],
            "content_location": "http://shop.example" + paths["cloc"],
        }
        async with client.post(sidecar.url + "/c/form", params=query, headers=host) as r:
            assert r.status == 200
        elsewhere = {"location": "http://elsewhere.example" + paths["other"]}
        async with client.post(sidecar.url + "/c/form", params=elsewhere, headers=host) as r:
            assert r.status == 200
        assert await states() == {"doc": "HIT", "loc": "MISS", "cloc": "MISS", "other": "HIT"}


async def test_an_invalidation_reaches_every_replica(start_sidecar, upstream, redis_server):
    """Replicas share Redis but each keeps a memory tier: an entry one of them invalidates
    must not be served by another from its memory."""
    settings = {"cache": {"redis": {"url": redis_server.url}}}
    first = start_sidecar(settings, upstream.url)
    second = start_sidecar(settings, upstream.url)
    host = {"Host": "shop.example"}
    plain = FRESH_MINUTE.format(name="shared")
    varying = FRESH_MINUTE.format(name="varying") + "&vary=Accept-Language"
    french = {**host, "Accept-Language": "fr"}
    async with aiohttp.ClientSession() as client:
        before: dict[str, str] = {}
        # Keys in Redis once written: the plain entry; then a marker and a variant.
        for path, headers, keys in ((plain, host, 1), (varying, french, 3)):
            status, cache, before[path], _ = await get(client, first.url + path, headers=headers)
            assert (status, cache) == (200, "MISS")

            def in_redis(count: int = keys) -> bool:
                return redis_server.command("KEYS", "*").count(b"rampart:cache:") >= count

            await async_wait_until(in_redis)
        # The second replica reads both from Redis, and keeps them in its memory.
        for path, headers in ((plain, host), (varying, french)):
            assert (await get(client, second.url + path, headers=headers))[1] == "HIT"
        async with client.get(second.admin_url + "/cache/stats") as r:
            assert (await r.json())["tiers"]["memory"]["entries"] >= 3

        for path in (plain, varying):
            async with client.put(first.url + path, headers=host) as r:
                assert r.status == 200

        async def served_fresh(path: str, headers: dict[str, str]) -> bool:
            return (await get(client, second.url + path, headers=headers))[1] == "MISS"

        # Published, not polled: a MISS well inside the entries' minute is the invalidation.
        await async_wait_until(lambda: served_fresh(plain, host), timeout=5, interval=0.05)
        await async_wait_until(lambda: served_fresh(varying, french), timeout=5, interval=0.05)
        # A variant stored after the invalidation does not bring those before it back.
        english = {**host, "Accept-Language": "en"}
        assert (await get(client, first.url + varying, headers=english))[1] == "MISS"
        for sidecar in (first, second):
            _, _, body, _ = await get(client, sidecar.url + varying, headers=french)
            assert body != before[varying]


async def test_a_stale_entry_is_revalidated_and_the_304_updates_it(start_sidecar, upstream):
    """RFC 9111 §4.3: a stale entry with a validator costs a conditional request and a 304,
    not the whole body again; the 304's fields replace the stored ones."""
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + "/c/rv?cc=max-age%3D60&etag=v1&cc304=max-age%3D600"
    async with aiohttp.ClientSession() as client:
        status, cache, first, _ = await get(client, url)
        assert (status, cache) == (200, "MISS")
        # no-cache: use the entry only after the upstream confirms it.
        status, cache, body, headers = await get(client, url, headers={"Cache-Control": "no-cache"})
        assert (status, cache, body) == (200, "REVALIDATED", first)
        assert upstream.last_request["headers"]["If-None-Match"] == '"v1"'
        assert headers["Cache-Control"] == "max-age=600"  # from the 304
        assert headers["X-Revalidation"] == "2"
        status, cache, body, headers = await get(client, url)
        assert (status, cache, body) == (200, "HIT", first)
        assert headers["Cache-Control"] == "max-age=600"  # the update was stored
    assert upstream.hits["/c/rv"] == 2
    assert sidecar.metric("rampart_cache_requests_total", result="revalidated") == 1


async def test_the_clients_own_conditionals_get_a_304_from_the_cache(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + "/c/cond?cc=max-age%3D60&etag=v7&modified=3600"
    async with aiohttp.ClientSession() as client:
        _, _, body, stored = await get(client, url)
        for conditional, expected in (
            ({"If-None-Match": '"v7"'}, 304),
            ({"If-None-Match": 'W/"v7", "other"'}, 304),  # weak comparison, any in the list
            ({"If-None-Match": "*"}, 304),
            ({"If-None-Match": '"v6"'}, 200),
            ({"If-Modified-Since": stored["Last-Modified"]}, 304),
            ({"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 200),
            ({"If-Modified-Since": "not a date"}, 200),
            # If-None-Match decides when both are there (RFC 9110 §13.2.2)
            ({"If-None-Match": '"v6"', "If-Modified-Since": stored["Last-Modified"]}, 200),
        ):
            status, cache, text, headers = await get(client, url, headers=conditional)
            assert (status, cache) == (expected, "HIT"), conditional
            if expected == 304:
                assert text == ""
                assert headers["ETag"] == '"v7"'
                assert "Last-Modified" not in headers  # only the fields RFC 9110 §15.4.5 lists
            else:
                assert text == body
    assert upstream.hits["/c/cond"] == 1


async def test_must_revalidate_is_never_answered_stale(start_sidecar, upstream):
    """stale-if-error, the sidecar's default or the response's, yields to must-revalidate,
    proxy-revalidate, s-maxage and no-cache (RFC 9111 §4.2.4)."""
    sidecar = start_sidecar(
        {"cache": {"staleIfError": "1h"}, "retries": {"attempts": 0}}, upstream.url
    )
    plain = sidecar.url + "/c/plain?cc=max-age%3D60"
    strict = [
        sidecar.url + "/c/strict?cc=max-age%3D60%2C%20must-revalidate",
        sidecar.url + "/c/proxy?cc=max-age%3D60%2C%20proxy-revalidate",
        sidecar.url + "/c/shared?cc=s-maxage%3D60",
    ]
    refresh = {"Cache-Control": "max-age=0"}  # the client will not take them as they are
    async with aiohttp.ClientSession() as client:
        for url in (plain, *strict):
            assert (await get(client, url))[1] == "MISS"
        upstream.failing = True
        status, cache, *_ = await get(client, plain, headers=refresh)
        assert (status, cache) == (200, "STALE")
        for url in strict:
            status, cache, *_ = await get(client, url, headers=refresh)
            assert (status, cache) == (503, "MISS"), url
            assert (await get(client, url))[1] == "HIT"  # still fresh for those who accept it


async def test_request_directives_are_obeyed(start_sidecar, upstream):
    """RFC 9111 §5.2.1: max-age, min-fresh, max-stale and only-if-cached."""
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    fresh = sidecar.url + "/c/minute?cc=max-age%3D60"
    stale = sidecar.url + "/c/stale?cc=max-age%3D0&etag=s1"  # stored stale: it has a validator
    strict = sidecar.url + "/c/strict?cc=max-age%3D0%2C%20must-revalidate&etag=m1"
    async with aiohttp.ClientSession() as client:
        only = {"Cache-Control": "only-if-cached"}
        status, cache, _, headers = await get(client, fresh, headers=only)
        assert (status, cache, headers["X-Rampart-Reason"]) == (504, "MISS", "only-if-cached")
        assert upstream.hits["/c/minute"] == 0
        for url in (fresh, stale, strict):
            await get(client, url)
        assert (await get(client, fresh, headers=only))[1] == "HIT"
        assert (await get(client, fresh, headers={"Cache-Control": "min-fresh=30"}))[1] == "HIT"
        assert (await get(client, fresh, headers={"Cache-Control": "min-fresh=3600"}))[1] == "MISS"
        assert (await get(client, fresh, headers={"Cache-Control": "max-age=3600"}))[1] == "HIT"

        assert (await get(client, stale, headers={"Cache-Control": "max-stale"}))[1] == "HIT"
        assert (await get(client, stale, headers={"Cache-Control": "max-stale=600"}))[1] == "HIT"
        hits = upstream.hits["/c/stale"]
        assert (await get(client, stale))[1] == "REVALIDATED"
        assert upstream.hits["/c/stale"] == hits + 1
        # must-revalidate: not even a client asking for stale gets it unconfirmed.
        assert (await get(client, strict, headers={"Cache-Control": "max-stale"}))[
            1
        ] == "REVALIDATED"


async def test_stale_while_revalidate_answers_at_once_and_refreshes_behind(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + "/c/swr?cc=max-age%3D0%2C%20stale-while-revalidate%3D60&etag=w1"
    url += "&cc304=max-age%3D600"
    async with aiohttp.ClientSession() as client:
        _, cache, first, _ = await get(client, url)
        assert cache == "MISS"
        status, cache, body, _ = await get(client, url)
        assert (status, cache, body) == (200, "STALE", first)  # not waiting for the upstream

        async def refreshed() -> bool:
            return (await get(client, url))[1] == "HIT"

        await async_wait_until(refreshed, timeout=5)
    assert upstream.last_request["headers"]["If-None-Match"] == '"w1"'
    assert upstream.hits["/c/swr"] == 2  # the first fetch and one background revalidation


@pytest.mark.parametrize(
    ("max_in_flight", "cap"),
    [(0, 16), (8, 4)],
    ids=["no-concurrency-limit", "half-the-concurrency-limit"],
)
async def test_background_revalidations_in_flight_are_capped(start_sidecar, max_in_flight, cap):
    """A client asking for many distinct stale URLs at once (#26) gets every stale answer
    at once, but the upstream sees no more background revalidations at a time than the
    cap: 16, or half the concurrency limit, whose slots they take like any request.
    Beyond the cap none starts and nothing waits; a later request refreshes those keys."""
    keys = 3 * cap
    release = asyncio.Event()
    held = peak = revalidations = 0

    async def page(request: web.Request) -> web.Response:
        nonlocal held, peak, revalidations
        etag = f'"{request.path}"'
        if request.headers.get("If-None-Match") != etag:
            swr = {"Cache-Control": "max-age=0, stale-while-revalidate=60", "ETag": etag}
            return web.Response(text=f"stale {request.path}\n", headers=swr)
        revalidations += 1
        held += 1
        peak = max(peak, held)
        try:
            await release.wait()
        finally:
            held -= 1
        return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "max-age=600"})

    app = web.Application()
    app.router.add_get("/page/{n}", page)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        settings = {"cache": {}, "concurrency": {"maxInFlight": max_in_flight}}
        sidecar = start_sidecar(settings, f"http://127.0.0.1:{runner.addresses[0][1]}")
        urls = [f"{sidecar.url}/page/{n}" for n in range(keys)]
        async with aiohttp.ClientSession() as client:
            assert {(await get(client, url))[1] for url in urls} == {"MISS"}
            answers = await asyncio.gather(*(get(client, url) for url in urls))
            assert [answer[:3] for answer in answers] == [
                (200, "STALE", f"stale /page/{n}\n") for n in range(keys)
            ]
            # Each answer came after the sidecar decided about its key's revalidation.
            await async_wait_until(lambda: held >= cap, what="revalidations at the upstream")
            assert peak == cap
            async with client.get(sidecar.admin_url + "/cache/stats") as r:
                stats = await r.json()
            # Every revalidation started is one the upstream holds: no other can arrive.
            assert stats["revalidations"] == {"inFlight": cap, "limit": cap, "skipped": keys - cap}
            assert held == peak == cap
            if max_in_flight:
                async with client.get(sidecar.admin_url + "/health/detailed") as r:
                    concurrency = (await r.json())["components"]["concurrency"]
                assert concurrency["utilization"] == cap / max_in_flight

            release.set()

            async def all_fresh() -> bool:
                results = [(await get(client, url))[1] for url in urls]
                return set(results) == {"HIT"}

            await async_wait_until(all_fresh, what="every key revalidated")
    finally:
        release.set()
        await runner.cleanup()
    assert peak == cap
    assert revalidations == keys  # each key once: the skipped ones on a later request


async def test_heuristic_freshness_from_last_modified(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    async with aiohttp.ClientSession() as client:
        # Modified ten hours ago: a tenth of that, an hour, of freshness (RFC 9111 §4.2.2).
        old = sidecar.url + "/c/old?modified=36000"
        assert [(await get(client, old))[1] for _ in range(2)] == ["MISS", "HIT"]
        # Not for a status that is not heuristically cacheable.
        moved = sidecar.url + "/c/moved?modified=36000&status=302"
        assert [(await get(client, moved))[1] for _ in range(2)] == ["MISS", "MISS"]


async def test_ranges_are_served_from_a_whole_stored_response(start_sidecar, upstream):
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + "/c/range?cc=max-age%3D60&size=100&etag=r1"
    async with aiohttp.ClientSession() as client:
        _, _, whole, _ = await get(client, url)
        for asked, status, text, content_range in (
            ("bytes=0-9", 206, whole[:10], "bytes 0-9/100"),
            ("bytes=90-", 206, whole[90:], "bytes 90-99/100"),
            ("bytes=-5", 206, whole[-5:], "bytes 95-99/100"),
            ("bytes=95-500", 206, whole[95:], "bytes 95-99/100"),
            ("bytes=100-200", 416, "", "bytes */100"),
        ):
            got = await get(client, url, headers={"Range": asked})
            assert (got[0], got[1], got[2]) == (status, "HIT", text), asked
            assert got[3]["Content-Range"] == content_range
        # Several ranges, or an If-Range that does not match: the whole entry.
        for extra in ({"Range": "bytes=0-1,5-6"}, {"Range": "bytes=0-1", "If-Range": '"r0"'}):
            got = await get(client, url, headers=extra)
            assert (got[0], got[2]) == (200, whole)
        got = await get(client, url, headers={"Range": "bytes=0-1", "If-Range": '"r1"'})
        assert (got[0], got[2]) == (206, whole[:2])
    assert upstream.hits["/c/range"] == 1


async def test_what_cannot_be_stored_is_not_waited_for(start_sidecar, upstream):
    """Coalescing makes identical misses wait for the first one's answer; when that answer
    may not be stored (no-store), the key is remembered for a while (Varnish's
    hit-for-miss) and its requests go upstream at once, side by side."""
    sidecar = start_sidecar({"cache": {}}, upstream.url)
    url = sidecar.url + "/c/live?cc=no-store&ms=300"
    async with aiohttp.ClientSession() as client:
        assert (await get(client, url))[1] == "MISS"  # learns that it is never stored
        upstream.shaped_peak = 0
        answers = await asyncio.gather(*(get(client, url) for _ in range(10)))
    assert {cache for _, cache, _, _ in answers} == {"MISS"}
    assert upstream.shaped_peak == 10  # all at once: none waited behind a leader
    assert upstream.hits["/c/live"] == 11


async def test_a_revalidation_by_one_replica_serves_the_others(
    start_sidecar, upstream, redis_server
):
    """The refreshed entry goes to Redis: a replica that had no copy of its own gets the
    revalidated one, fresh, without asking the upstream."""
    settings = {"cache": {"redis": {"url": redis_server.url}}}
    first, second, third = (start_sidecar(settings, upstream.url) for _ in range(3))
    host = {"Host": "shop.example"}
    path = "/c/shared-rv?cc=max-age%3D0&etag=e1&cc304=max-age%3D600"
    async with aiohttp.ClientSession() as client:
        _, cache, body, _ = await get(client, first.url + path, headers=host)
        assert cache == "MISS"  # stored stale at once: it has a validator

        def in_redis() -> bool:
            return redis_server.command("KEYS", "*").count(b"rampart:cache:") >= 1

        await async_wait_until(in_redis)
        status, cache, text, headers = await get(client, second.url + path, headers=host)
        assert (status, cache, text) == (200, "REVALIDATED", body)
        assert headers["Cache-Control"] == "max-age=600"

        async def refreshed_in_redis() -> bool:
            return b"max-age=600" in redis_server.command("GET", redis_key(redis_server))

        def redis_key(server) -> str:  # the one entry's key
            keys = server.command("KEYS", "*").split(b"\r\n")
            return next(k.decode() for k in keys if k.startswith(b"rampart:cache:"))

        await async_wait_until(refreshed_in_redis)
        status, cache, text, headers = await get(client, third.url + path, headers=host)
        assert (status, cache, text) == (200, "HIT", body)
        assert headers["Cache-Control"] == "max-age=600"
    assert upstream.hits["/c/shared-rv"] == 2  # the first fetch and one revalidation
