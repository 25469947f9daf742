from __future__ import annotations

import time
from email.utils import formatdate

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from rampart_sidecar.cache.entry import CacheEntry, VaryMarker
from rampart_sidecar.cache.memory import MemoryBackend
from rampart_sidecar.cache.policy import (
    CacheControl,
    default_ttl_for,
    freshness_lifetime,
    path_of_key,
    plan_request,
    primary_key,
    variant_key,
)
from rampart_sidecar.config import CacheSettings, MemoryCacheSettings


def headers(**fields: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in fields.items()}))


NO_HEADERS = headers()


def lifetime(response: CIMultiDictProxy[str], request=NO_HEADERS, status=200, ttl=0.0):
    decided = freshness_lifetime(response, request, status, ttl)
    return None if decided is None else decided[0]


def test_cache_control_parsing():
    control = CacheControl.parse(['public, max-age="60"', "s-maxage=abc, No-Store"])
    assert "public" in control
    assert "no-store" in control
    assert control.seconds("max-age") == 60
    assert control.seconds("s-maxage") == 0  # malformed counts as 0
    assert control.seconds("stale-if-error") is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"Cache_Control": "s-maxage=30, max-age=10"}, 30),
        ({"Cache_Control": "max-age=10"}, 10),
        ({"Cache_Control": "public"}, None),  # nothing explicit, no default TTL
        ({"Cache_Control": "max-age=0"}, None),
        ({"Cache_Control": "max-age=60, no-store"}, None),
        ({"Cache_Control": "max-age=60, private"}, None),
        ({"Cache_Control": "max-age=60, no-cache"}, None),
        ({"Cache_Control": "max-age=60", "Set_Cookie": "a=b"}, None),
        ({"Cache_Control": "max-age=60", "Vary": "*"}, None),
        ({"Expires": "not a date"}, None),
    ],
)
def test_freshness_and_storability(fields, expected):
    assert lifetime(headers(**fields)) == expected


def test_expires_is_relative_to_date():
    date = "Mon, 23 Nov 2026 09:00:00 GMT"
    expires = "Mon, 23 Nov 2026 09:05:00 GMT"
    assert lifetime(headers(Date=date, Expires=expires)) == 300
    soon = formatdate(time.time() + 120, usegmt=True)
    assert 100 < lifetime(headers(Expires=soon)) <= 120


def test_default_ttl_only_without_caching_headers():
    assert lifetime(NO_HEADERS, ttl=3600) == 3600
    assert lifetime(headers(Cache_Control="max-age=5"), ttl=3600) == 5
    assert lifetime(NO_HEADERS, ttl=3600, status=206) is None
    assert lifetime(NO_HEADERS, ttl=3600, status=500) is None
    assert lifetime(NO_HEADERS, ttl=3600, status=404) == 3600


def test_authorization_needs_public_or_s_maxage():
    auth = headers(Authorization="Bearer x")
    assert lifetime(headers(Cache_Control="max-age=60"), auth) is None
    assert lifetime(headers(Cache_Control="public, max-age=60"), auth) == 60
    assert lifetime(headers(Cache_Control="s-maxage=60"), auth) == 60


@pytest.mark.parametrize(
    ("method", "fields", "lookup", "store"),
    [
        ("GET", {}, True, True),
        ("HEAD", {}, True, True),
        ("POST", {}, False, False),
        ("GET", {"Cache_Control": "no-store"}, False, False),
        ("GET", {"Cache_Control": "no-cache"}, False, True),
        ("GET", {"Cache_Control": "max-age=0"}, False, True),
        ("GET", {"Pragma": "no-cache"}, False, True),
        ("GET", {"Range": "bytes=0-1"}, True, False),  # from a whole stored response
        ("HEAD", {"Range": "bytes=0-1"}, False, False),
    ],
)
def test_request_plans(method, fields, lookup, store):
    plan = plan_request(method, headers(**fields))
    assert (plan.lookup, plan.store) == (lookup, store)


def test_keys():
    key = primary_key("GET", "Shop.Example", "/a/b?x=1")
    assert key == "GET shop.example/a/b?x=1"
    assert path_of_key(key) == "/a/b?x=1"
    en = variant_key(key, ("accept-language",), headers(Accept_Language="en"))
    fr = variant_key(key, ("accept-language",), headers(Accept_Language="fr"))
    assert en != fr
    assert path_of_key(en) == "/a/b?x=1"
    assert en == variant_key(key, ("accept-language",), headers(Accept_Language="en"))


def test_route_ttls():
    settings = CacheSettings.model_validate(
        {"ttl": "1h", "routes": [{"pathPrefix": "/a"}, {"pathPrefix": "/a/b", "ttl": "5s"}]}
    )
    assert default_ttl_for(settings, "/a/x") == 3600
    assert default_ttl_for(settings, "/a/b/c") == 5
    assert default_ttl_for(settings, "/z") == 0
    assert default_ttl_for(CacheSettings.model_validate({"ttl": "1m"}), "/z") == 60


def entry(body: bytes = b"hello", stale_until: float = 1e12) -> CacheEntry:
    return CacheEntry(
        200, (("Content-Type", "text/plain"),), body, 1.0, 2.0, stale_until, 3.0, "/p"
    )


def test_entry_round_trips_and_rejects_garbage():
    original = entry(b"\x00\xffbinary")
    assert CacheEntry.decode(original.encode()) == original
    fields = (("ETag", '"a: b"'), ("Content-Length", "5"), ("X-Odd", "caf\udcc3 \u00e9"))
    with_length = CacheEntry(200, fields, b"hello", 1.0, 2.0, 3.0)
    decoded = CacheEntry.decode(with_length.encode())
    assert isinstance(decoded, CacheEntry)
    assert decoded.header_pairs() == [fields[0], fields[2], fields[1]]  # the length last
    assert decoded.head.content_length == 5
    assert decoded != CacheEntry(200, fields[:2], b"hello", 1.0, 2.0, 3.0)  # headers count
    marker = VaryMarker(("accept",), 9.0, "/p")
    assert CacheEntry.decode(marker.encode()) == marker
    for garbage in (b"", b"\x00\x00\x00\x05{bad}", b"\x00\x00\x00\x02[]", b"pickle\x80\x04"):
        with pytest.raises(ValueError):  # noqa: PT011 - every kind of garbage is one error
            CacheEntry.decode(garbage)


async def test_memory_lru_bounds_entries_and_bytes():
    now = [0.0]
    memory = MemoryBackend(MemoryCacheSettings(max_entries=3, max_bytes=10_000), lambda: now[0])
    for name in "abcd":
        await memory.set(name, entry())
    assert len(memory) == 3
    assert await memory.get("a") is None  # the oldest went first
    await memory.get("b")  # b is now the most recent
    await memory.set("e", entry())
    assert await memory.get("c") is None
    assert await memory.get("b") is not None
    await memory.set("big", entry(b"x" * 9_000))
    assert memory.bytes <= 10_000
    await memory.set("huge", entry(b"x" * 20_000))  # larger than the whole tier
    assert await memory.get("huge") is None


async def test_memory_drops_entries_past_their_stale_window():
    now = [0.0]
    memory = MemoryBackend(MemoryCacheSettings(), lambda: now[0])
    await memory.set("k", entry(stale_until=10.0))
    assert await memory.get("k") is not None
    now[0] = 10.0
    assert await memory.get("k") is None
    assert memory.bytes == 0


async def test_memory_invalidation_by_prefix_and_exact_path():
    memory = MemoryBackend(MemoryCacheSettings())
    for path in ("/a/1", "/a/2", "/b/1"):
        await memory.set(primary_key("GET", "h", path), entry())
    assert await memory.invalidate(path="/a/1") == 1
    assert await memory.invalidate(path_prefix="/a") == 1
    assert await memory.invalidate() == 1
    assert len(memory) == 0
