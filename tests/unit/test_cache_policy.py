from __future__ import annotations

import calendar
import time
from email.utils import formatdate

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from rampart_common.sidecar_settings import CacheSettings, MemoryCacheSettings
from rampart_sidecar.cache.entry import CacheEntry, VaryMarker
from rampart_sidecar.cache.memory import MemoryBackend
from rampart_sidecar.cache.policy import (
    CacheControl,
    RequestPlan,
    Storage,
    apparent_age,
    default_ttl_for,
    invalidated_targets,
    parse_age,
    parse_http_date,
    path_of_key,
    plan_plain_request,
    plan_request,
    primary_key,
    storage,
    variant_key,
)


def headers(**fields: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in fields.items()}))


NO_HEADERS = headers()


def lifetime(response: CIMultiDictProxy[str], request=NO_HEADERS, status=200, ttl=0.0):
    """Seconds the response stays fresh; None when it must not be stored fresh."""
    decided = storage(response, request, status, ttl)
    return None if decided is None or decided.lifetime <= 0 else decided.lifetime


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


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_a_request_without_cache_fields_plans_as_one_with_none_parsed(method):
    assert plan_plain_request(method) == plan_request(method, headers())
    assert plan_plain_request(method) == plan_request(method, headers(Accept="a", Host="h"))


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


# --- RFC 9111 / 9110 / 9213 rules, function by function -----------------------------------


def fields(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    """Headers with repeated field lines, in order."""
    return CIMultiDictProxy(CIMultiDict(pairs))


DATE = "Mon, 23 Nov 2026 09:00:00 GMT"
DATE_TS = calendar.timegm((2026, 11, 23, 9, 0, 0))
TEN_DAYS_BEFORE = "Fri, 13 Nov 2026 09:00:00 GMT"  # a heuristic lifetime of one day
FIVE_MINUTES_LATER = "Mon, 23 Nov 2026 09:05:00 GMT"
ONE_MINUTE_BEFORE = "Mon, 23 Nov 2026 08:59:00 GMT"


@pytest.mark.parametrize(
    ("value", "moment"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", (1994, 11, 6, 8, 49, 37)),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", (1994, 11, 6, 8, 49, 37)),  # RFC 850
        ("Wednesday, 06-Nov-24 08:49:37 GMT", (2024, 11, 6, 8, 49, 37)),  # RFC 850, 20xx
        ("Sun Nov  6 08:49:37 1994", (1994, 11, 6, 8, 49, 37)),  # asctime, space-padded day
        ("Sun Nov 16 08:49:37 1994", (1994, 11, 16, 8, 49, 37)),  # asctime, two-digit day
        ("THU, 01 AUG 2024 00:00:00 gMT", (2024, 8, 1, 0, 0, 0)),
        ("thursday, 01-aug-24 00:00:00 gmt", (2024, 8, 1, 0, 0, 0)),
        ("THU AUG  1 00:00:00 2024", (2024, 8, 1, 0, 0, 0)),
        ("Thu, 31 Dec 2026 23:59:59 GMT", (2026, 12, 31, 23, 59, 59)),
        (" Sun, 06 Nov 1994 08:49:37 GMT ", (1994, 11, 6, 8, 49, 37)),  # OWS around it
    ],
)
def test_parse_http_date_accepts_the_three_formats(value, moment):
    assert parse_http_date(value) == calendar.timegm(moment)


def test_parse_http_date_value():
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert parse_http_date(DATE) == DATE_TS


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 UTC",  # UTC is not GMT
        "Sun, 06 Nov 1994 08:49:37 PST",  # another zone
        "Sun, 06 Nov 1994 08:49:37 +0000",
        "Sun, 06 Nov 1994 08:49:37",  # no zone
        "Sun, 06 Nov 94 08:49:37 GMT",  # two-digit year in the IMF form
        "Sun 06 Nov 1994 08:49:37 GMT",  # missing comma
        "Sun,  06 Nov 1994 08:49:37 GMT",  # doubled spaces
        "Sun, 06 Nov 1994  08:49:37 GMT",
        "Sun, 06-Nov-1994 08:49:37 GMT",  # dashes in the IMF date
        "Sun, 06 Nov 1994 08.49.37 GMT",  # periods in the time
        "Sun, 06 Nov 1994 8:49:37 GMT",  # one-digit hour
        "Sun, 6 Nov 1994 08:49:37 GMT",  # one-digit day in the IMF form
        "Mon, 30 Feb 2026 00:00:00 GMT",  # no such date
        "Sun, 06 Nov 1994 24:00:00 GMT",  # no such hour
        "Sun, 06 Foo 1994 08:49:37 GMT",  # no such month
        "Sunday, 06-Nov-1994 08:49:37 GMT",  # RFC 850 takes a two-digit year
        "Sun, 06-Nov-94 08:49:37 GMT",  # RFC 850 takes the full day name
        "Sun Nov 6 08:49:37 1994",  # asctime pads a one-digit day with a space
        "1994-11-06T08:49:37Z",
        "0",
        "",
    ],
)
def test_parse_http_date_rejects(value):
    assert parse_http_date(value) is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["7200"], 7200),
        (["7200, 0"], 7200),  # a list: its first member
        (["0, 7200"], 0),
        (["7200", "0"], 7200),  # the first field line
        (["7200;foo=bar"], 7200),
        ([" 7200 "], 7200),
        (["abc"], 0),
        (["-7200"], 0),
        (["+7200"], 0),
        (["7200.0"], 0),
        ([""], 0),
        (["2147483647"], 2147483647),
        (["2147483648"], 2**31),
        (["99999999999999999999"], 2**31),  # capped, not an overflow
        ([], 0),
    ],
)
def test_parse_age(values, expected):
    assert parse_age(values) == expected


def test_cache_control_quoted_string_is_one_argument():
    control = CacheControl.parse(['extension="max-age=3600", max-age=1'])
    assert control.directives["extension"] == "max-age=3600"
    assert control.seconds("max-age") == 1
    control = CacheControl.parse(['foo="a, b, max-age=3600", max-age=2, bar'])
    assert control.directives["foo"] == "a, b, max-age=3600"
    assert control.seconds("max-age") == 2
    assert "bar" in control
    assert set(control.directives) == {"foo", "max-age", "bar"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["max-age=10", "max-age=20"], 10),  # across field lines
        (["max-age=10, max-age=20"], 10),  # within one
        (["MAX-AGE=10, max-age=20"], 10),  # names compared case-insensitively
        (["max-age=20, public", "Max-Age=10"], 20),
        (["max-age =3600, max-age=5"], 5),  # a space before "=": not a directive
        (['max-age="60"'], 60),
        (["max-age='60'"], 0),  # a malformed argument counts as 0
        (["max-age=3600.0"], 0),
        (["max-age=a100"], 0),
        (["max-age"], 0),
        (["max-age=99999999999"], 2**31),
        (["public"], None),
        ([], None),
    ],
)
def test_cache_control_max_age(values, expected):
    assert CacheControl.parse(values).seconds("max-age") == expected


def test_cache_control_space_before_equals_is_no_directive():
    control = CacheControl.parse(["max-age =3600"])
    assert "max-age" not in control
    assert control.seconds("max-age") is None


def test_cache_control_names_and_empty_members():
    control = CacheControl.parse([",, No-Store ,, PUBLIC,"])
    assert set(control.directives) == {"no-store", "public"}


@pytest.mark.parametrize(
    ("value", "forbids"),
    [
        ("must-revalidate", True),
        ("proxy-revalidate", True),
        ("s-maxage=60", True),
        ("no-cache", True),
        ("max-age=60, Must-Revalidate", True),
        ("max-age=60", False),
        ("public, max-age=60, stale-if-error=30", False),
        ('foo="must-revalidate"', False),  # inside an argument, not a directive
    ],
)
def test_cache_control_forbids_stale(value, forbids):
    assert CacheControl.parse([value]).forbids_stale is forbids


def decide(
    *pairs: tuple[str, str],
    status: int = 200,
    request: CIMultiDictProxy[str] = NO_HEADERS,
    ttl: float = 0.0,
    now: float | None = None,
) -> Storage | None:
    return storage(fields(*pairs), request, status, ttl, now)


def lifetime_of(*pairs: tuple[str, str], **options) -> float | None:
    decided = decide(*pairs, **options)
    return None if decided is None else decided.lifetime


MAX_AGE_60 = ("Cache-Control", "max-age=60")
ETAG = ("ETag", '"v1"')


@pytest.mark.parametrize(
    ("pairs", "status", "expected"),
    [
        ((MAX_AGE_60,), 302, 60),  # any final status with explicit freshness
        ((MAX_AGE_60,), 500, 60),
        ((MAX_AGE_60,), 599, 60),
        ((("Date", DATE), ("Expires", FIVE_MINUTES_LATER)), 302, 300),
        ((), 302, None),  # 302 is not heuristically cacheable
        ((("Last-Modified", TEN_DAYS_BEFORE),), 302, None),
        ((ETAG,), 500, None),
        ((MAX_AGE_60,), 206, None),  # never stored
        ((MAX_AGE_60,), 304, None),
        ((MAX_AGE_60,), 103, None),
        ((MAX_AGE_60, ("Vary", "Accept, *")), 200, None),  # "*" anywhere in the list
        ((MAX_AGE_60, ("Vary", "Accept"), ("Vary", "*")), 200, None),  # or a second line
        ((MAX_AGE_60, ("Vary", "Accept, Accept-Encoding")), 200, 60),
        ((MAX_AGE_60, ("Set-Cookie", "a=b")), 200, None),
        ((("Cache-Control", "private, max-age=60"),), 200, None),
        ((("Cache-Control", "max-age=60"), ("Cache-Control", "private")), 200, None),
        ((("Cache-Control", "no-store, max-age=60"),), 200, None),
        ((("Cache-Control", "no-store, must-understand, max-age=60"),), 200, 60),
        ((("Cache-Control", "no-store, must-understand, max-age=60"),), 599, None),
        ((("Cache-Control", "must-understand, max-age=60"),), 599, None),
        ((("Cache-Control", "s-maxage=30, max-age=10"),), 200, 30),
    ],
)
def test_storage_decisions(pairs, status, expected):
    assert lifetime_of(*pairs, status=status) == expected


def test_set_cookie_is_stored_only_when_the_operator_chose_it():
    response = fields(MAX_AGE_60, ("Set-Cookie", "a=b"))
    assert storage(response, NO_HEADERS, 200, 0.0) is None  # cache.setCookie: pass
    stored = storage(response, NO_HEADERS, 200, 0.0, cookies=True)  # strip or store
    assert stored is not None
    assert stored.lifetime == 60
    # Whatever else refuses a response still does.
    private = fields(("Cache-Control", "private, max-age=60"), ("Set-Cookie", "a=b"))
    assert storage(private, NO_HEADERS, 200, 0.0, cookies=True) is None


def test_non_heuristic_status_ignores_the_default_ttl():
    assert lifetime_of(status=302, ttl=3600) is None
    assert lifetime_of(status=500, ttl=3600) is None
    assert lifetime_of(status=200, ttl=3600) == 3600
    assert lifetime_of(status=410, ttl=3600) == 3600


@pytest.mark.parametrize(
    ("control", "expected"),
    [
        ("max-age=60", None),
        ("public, max-age=60", 60),
        ("s-maxage=60", 60),
        ("must-revalidate, max-age=60", 60),
        ("proxy-revalidate, max-age=60", None),  # not one of the three (RFC 9111 3.5)
        ("public, private, max-age=60", None),
    ],
)
def test_storage_with_authorization(control, expected):
    auth = headers(Authorization="Bearer x")
    assert lifetime_of(("Cache-Control", control), request=auth) == expected


def test_storage_without_authorization_needs_nothing_more():
    assert lifetime_of(MAX_AGE_60, request=headers(Cookie="a=b")) == 60


@pytest.mark.parametrize(
    ("pairs", "status", "expected"),
    [
        ((), 200, 86400.0),  # a tenth of the ten days since Last-Modified
        ((), 404, 86400.0),
        ((), 301, 86400.0),
        ((("Cache-Control", "public"),), 302, 86400.0),  # public allows a heuristic
        ((("Cache-Control", "public"),), 500, 86400.0),
        ((), 302, None),
        ((), 500, None),
    ],
)
def test_heuristic_lifetime(pairs, status, expected):
    decided = decide(("Date", DATE), ("Last-Modified", TEN_DAYS_BEFORE), *pairs, status=status)
    if expected is None:
        assert decided is None
    else:
        assert decided is not None
        assert decided.lifetime == expected
        assert decided.heuristic is True


def test_heuristic_lifetime_details():
    # Without Date: from now.
    decided = decide(("Last-Modified", TEN_DAYS_BEFORE), now=DATE_TS)
    assert decided is not None
    assert decided.lifetime == 86400.0
    # An explicit lifetime wins over the heuristic.
    decided = decide(
        ("Date", DATE), ("Last-Modified", TEN_DAYS_BEFORE), ("Cache-Control", "max-age=5")
    )
    assert decided is not None
    assert (decided.lifetime, decided.heuristic) == (5.0, False)
    # Last-Modified after Date: no lifetime, but it is a validator.
    decided = decide(("Date", ONE_MINUTE_BEFORE), ("Last-Modified", DATE))
    assert decided is not None
    assert decided.lifetime == 0.0
    # An unparseable Last-Modified: the configured TTL.
    decided = decide(("Last-Modified", "yesterday"), ttl=42.0)
    assert decided is not None
    assert (decided.lifetime, decided.heuristic) == (42.0, True)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ((("Cache-Control", "no-cache, max-age=60"), ETAG), 0.0),
        ((("Cache-Control", "no-cache, max-age=60"), ("Last-Modified", TEN_DAYS_BEFORE)), 0.0),
        ((("Cache-Control", "no-cache"), ETAG), 0.0),
        ((("Cache-Control", "no-cache, max-age=60"),), None),  # nothing to revalidate with
        ((("Cache-Control", "max-age=0"), ETAG), 0.0),
        ((("Cache-Control", "max-age=0"),), None),
    ],
)
def test_no_cache_is_stored_only_with_a_validator(pairs, expected):
    decided = decide(*pairs)
    if expected is None:
        assert decided is None
    else:
        assert decided is not None
        assert decided.lifetime == expected


def test_no_cache_forbids_stale():
    decided = decide(("Cache-Control", "no-cache, max-age=60"), ETAG)
    assert decided is not None
    assert decided.stale_allowed is False


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ((("Date", DATE), ("Expires", FIVE_MINUTES_LATER)), 300.0),  # relative to Date
        ((("Date", DATE), ("Expires", "0")), None),  # invalid: already expired
        ((("Date", DATE), ("Expires", "0"), ETAG), 0.0),
        ((("Date", DATE), ("Expires", "Mon, 23 Nov 2026 09:05:00 UTC"), ETAG), 0.0),
        ((("Date", DATE), ("Expires", FIVE_MINUTES_LATER), ("Expires", FIVE_MINUTES_LATER)), None),
        (
            (
                ("Date", DATE),
                ("Expires", FIVE_MINUTES_LATER),
                ("Expires", FIVE_MINUTES_LATER),
                ETAG,
            ),
            0.0,
        ),
        ((("Date", DATE), ("Expires", ONE_MINUTE_BEFORE)), None),  # expired on arrival
        ((("Date", DATE), ("Expires", ONE_MINUTE_BEFORE), ETAG), 0.0),
        ((("Date", DATE), ("Expires", "0"), MAX_AGE_60), 60.0),  # max-age wins over Expires
        ((("Date", DATE), ("Expires", FIVE_MINUTES_LATER), MAX_AGE_60), 60.0),
    ],
)
def test_expires(pairs, expected):
    assert lifetime_of(*pairs) == expected


@pytest.mark.parametrize(
    ("control", "allowed"),
    [
        ("max-age=60", True),
        ("max-age=60, stale-if-error=60", True),
        ("must-revalidate, max-age=60", False),
        ("proxy-revalidate, max-age=60", False),
        ("s-maxage=60", False),
    ],
)
def test_stale_allowed(control, allowed):
    decided = decide(("Cache-Control", control))
    assert decided is not None
    assert decided.stale_allowed is allowed


@pytest.mark.parametrize(
    ("pairs", "ttl", "expected"),
    [
        # A valid CDN-Cache-Control replaces Cache-Control (RFC 9213 section 2.1).
        ((("CDN-Cache-Control", "max-age=10"), ("Cache-Control", "no-store")), 0.0, 10.0),
        ((("CDN-Cache-Control", "max-age=10"), ("Cache-Control", "max-age=3600")), 0.0, 10.0),
        ((("CDN-Cache-Control", "max-age=3600"), ("Cache-Control", "private")), 0.0, 3600.0),
        ((("CDN-Cache-Control", "s-maxage=20, max-age=10"),), 0.0, 20.0),
        ((("CDN-Cache-Control", "foobar, max-age=10"),), 0.0, 10.0),
        ((("CDN-Cache-Control", "max-age=10;foo=1"),), 0.0, 10.0),  # parameters ignored
        ((("CDN-Cache-Control", "max-age=10"), ("CDN-Cache-Control", "public")), 0.0, 10.0),
        ((("CDN-Cache-Control", "no-store"), MAX_AGE_60), 0.0, None),
        ((("CDN-Cache-Control", "private"), MAX_AGE_60), 0.0, None),
        ((("CDN-Cache-Control", "no-cache"), MAX_AGE_60), 0.0, None),
        ((("CDN-Cache-Control", "none"), ("Cache-Control", "no-store")), 30.0, 30.0),
        (
            (
                ("CDN-Cache-Control", "max-age=10"),
                ("Date", DATE),
                ("Expires", ONE_MINUTE_BEFORE),
            ),
            0.0,
            10.0,
        ),
        # An invalid one is ignored as a whole: Cache-Control decides.
        ((("CDN-Cache-Control", 'max-age="10"'), MAX_AGE_60), 0.0, 60.0),
        ((("CDN-Cache-Control", 'max-age="10"'), ("Cache-Control", "no-store")), 0.0, None),
        ((("CDN-Cache-Control", "max-age=-5"), MAX_AGE_60), 0.0, 60.0),
        ((("CDN-Cache-Control", "max-age=10.5"), MAX_AGE_60), 0.0, 60.0),
        ((("CDN-Cache-Control", "MAX-AGE=10"), MAX_AGE_60), 0.0, 60.0),  # keys are lower case
        ((("CDN-Cache-Control", "max-age=10, &&&&&"), ("Cache-Control", "no-store")), 0.0, None),
        ((("CDN-Cache-Control", "max-age=10"), MAX_AGE_60, ("CDN-Cache-Control", "&")), 0.0, 60.0),
    ],
)
def test_cdn_cache_control(pairs, ttl, expected):
    assert lifetime_of(*pairs, ttl=ttl) == expected


def test_cdn_cache_control_directives_decide_staleness():
    decided = decide(("CDN-Cache-Control", "max-age=10, must-revalidate"), MAX_AGE_60)
    assert decided is not None
    assert decided.stale_allowed is False
    decided = decide(("CDN-Cache-Control", "max-age=10"), ("Cache-Control", "must-revalidate"))
    assert decided is not None
    assert decided.stale_allowed is True


@pytest.mark.parametrize(
    ("plan", "age", "fresh_for", "stale_allowed", "accepted"),
    [
        (RequestPlan(True, True), 100.0, 1.0, False, True),
        (RequestPlan(True, True), 100.0, -1.0, True, False),  # stale without max-stale
        (RequestPlan(True, True, max_age=60), 60.0, 100.0, True, True),
        (RequestPlan(True, True, max_age=60), 61.0, 100.0, True, False),
        (RequestPlan(True, True, max_age=60), 61.0, -1.0, True, False),
        (RequestPlan(True, True, min_fresh=30), 0.0, 30.0, True, True),
        (RequestPlan(True, True, min_fresh=30), 0.0, 29.0, True, False),
        (RequestPlan(True, True, max_stale=30.0), 0.0, -30.0, True, True),
        (RequestPlan(True, True, max_stale=30.0), 0.0, -31.0, True, False),
        (RequestPlan(True, True, max_stale=30.0), 0.0, -1.0, False, False),  # must-revalidate
        (RequestPlan(True, True, max_stale=float("inf")), 0.0, -1e9, True, True),
        (RequestPlan(True, True, max_stale=float("inf")), 0.0, -1e9, False, False),
    ],
)
def test_request_plan_accepts(plan, age, fresh_for, stale_allowed, accepted):
    assert plan.accepts(age, fresh_for, stale_allowed) is accepted


@pytest.mark.parametrize(
    ("control", "attribute", "expected"),
    [
        ("max-age=60", "max_age", 60),
        ("max-age=60", "lookup", True),
        ("public", "max_age", None),
        ("min-fresh=30", "min_fresh", 30),
        ("min-fresh=abc", "min_fresh", 0),
        ("max-stale=30", "max_stale", 30.0),
        ("max-stale", "max_stale", float("inf")),
        ("max-stale=abc", "max_stale", 0.0),
        ("public", "max_stale", 0.0),
        ("only-if-cached", "only_if_cached", True),
        ("public", "only_if_cached", False),
        ("no-cache", "lookup", False),
        ("no-store", "store", False),
        ("no-store", "lookup", False),
    ],
)
def test_plan_request_reads_request_directives(control, attribute, expected):
    plan = plan_request("GET", headers(Cache_Control=control))
    assert getattr(plan, attribute) == expected


def test_plan_request_max_stale_without_value_accepts_any_staleness():
    plan = plan_request("GET", headers(Cache_Control="max-stale"))
    assert plan.accepts(0.0, -1e9, True)
    assert not plan.accepts(0.0, -1e9, False)
    assert not plan_request("GET", headers(Cache_Control="max-stale=10")).accepts(0, -11, True)


@pytest.mark.parametrize(
    ("method", "pairs", "lookup", "store"),
    [
        ("GET", (("Pragma", "no-cache"),), False, True),  # HTTP/1.0's no-cache
        ("GET", (("Pragma", "No-Cache"),), False, True),
        ("GET", (("Pragma", "no-cache"), ("Cache-Control", "max-age=60")), True, True),
        ("GET", (("Pragma", "foo"),), True, True),
        ("GET", (("Range", "bytes=0-1"),), True, False),
        ("GET", (("Range", "bytes=0-1"), ("Cache-Control", "max-age=0")), True, False),
        ("HEAD", (("Range", "bytes=0-1"),), False, False),
        ("HEAD", (("Cache-Control", "max-age=60"),), True, True),
        ("POST", (("Cache-Control", "max-age=60"),), False, False),
        ("OPTIONS", (), False, False),
    ],
)
def test_plan_request_lookup_and_store(method, pairs, lookup, store):
    plan = plan_request(method, fields(*pairs))
    assert (plan.lookup, plan.store) == (lookup, store)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, ["/a"]),
        (204, ["/a"]),
        (301, ["/a"]),
        (399, ["/a"]),
        (199, []),
        (400, []),
        (404, []),
        (500, []),
    ],
)
def test_invalidated_targets_only_after_2xx_and_3xx(status, expected):
    assert invalidated_targets("example.com", "/a", status, []) == expected


def test_invalidated_targets_same_host_locations():
    locations = [
        "/c",  # absolute path
        "d",  # relative to the target
        "http://example.com/e?x=1",  # absolute, same host, query kept
        "http://EXAMPLE.com/f",  # host compared case-insensitively
        "http://other.example/g",  # another host
        "//other.example/h",  # another host, scheme-relative
        "http://example.com:8080/i",  # another port
        "/c",  # no duplicates
        "/a/b",  # the target itself
    ]
    assert invalidated_targets("example.com", "/a/b", 201, locations) == [
        "/a/b",
        "/c",
        "/a/d",
        "/e?x=1",
        "/f",
    ]


def test_invalidated_targets_on_a_host_with_a_port():
    locations = ["http://example.com:8080/x", "http://example.com/y", "/z"]
    assert invalidated_targets("example.com:8080", "/", 200, locations) == ["/", "/x", "/z"]


def test_variant_key_normalises_whitespace_and_field_lines():
    primary = "GET example.com/p"
    vary = ("accept-language",)
    keys = {
        variant_key(primary, vary, fields(("Accept-Language", value)))
        for value in ("en,fr", "en, fr", " en ,  fr ")
    }
    keys.add(
        variant_key(primary, vary, fields(("Accept-Language", "en"), ("Accept-Language", "fr")))
    )
    assert len(keys) == 1
    key = keys.pop()
    assert key.startswith(primary + " #")
    assert key != variant_key(primary, vary, fields(("Accept-Language", "fr, en")))
    assert key != variant_key(primary, vary, fields(("Accept-Language", "en")))


def test_variant_key_depends_on_each_header_and_the_generation():
    primary = "GET example.com/p"
    vary = ("accept", "accept-language")
    one = fields(("Accept", "en"), ("Accept-Language", "fr"))
    swapped = fields(("Accept", "fr"), ("Accept-Language", "en"))
    assert variant_key(primary, vary, one) != variant_key(primary, vary, swapped)
    assert variant_key(primary, vary, one, "1") != variant_key(primary, vary, one, "2")
    assert variant_key(primary, vary, one, "1") == variant_key(primary, vary, one, "1")
    assert variant_key(primary, vary, one) == variant_key(primary, vary, one, "")
    assert variant_key(primary, vary, one) != variant_key("GET example.com/q", vary, one)


@pytest.mark.parametrize(
    ("pairs", "received", "expected"),
    [
        ((("Age", "100"), ("Date", DATE)), DATE_TS + 50, 100.0),  # Age is larger
        ((("Age", "10"), ("Date", DATE)), DATE_TS + 50, 50.0),  # received - Date is larger
        ((("Age", "30"),), DATE_TS, 30.0),
        ((("Date", DATE),), DATE_TS + 50, 50.0),
        ((("Date", DATE),), DATE_TS - 50, 0.0),  # a Date in the future: no negative age
        ((("Age", "20"), ("Date", "yesterday")), DATE_TS + 50, 20.0),
        ((("Age", "abc"), ("Date", DATE)), DATE_TS + 5, 5.0),
        ((), DATE_TS, 0.0),
    ],
)
def test_apparent_age(pairs, received, expected):
    assert apparent_age(fields(*pairs), received) == expected


# -- what a review of the rules above against the RFCs found ------------------------


@pytest.mark.parametrize("digits", ["²", "٣", "1²", "³600"])
def test_delta_seconds_are_ascii_digits_only(digits):
    """str.isdigit() takes "²", which int() refuses: a hostile Age or max-age crashed the
    cache. RFC 9111 §1.2.2: DIGIT only, so these are invalid (Age ignored, max-age 0)."""
    assert parse_age([digits]) == 0
    assert CacheControl.parse([f"max-age={digits}"]).seconds("max-age") == 0
    stored = storage(headers(Cache_Control=f"max-age={digits}"), NO_HEADERS, 200, 0.0)
    assert stored is None  # stale at once, and nothing to revalidate with


def test_rfc850_years_are_within_fifty_years_of_now():
    """RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century."""
    this_year = time.gmtime().tm_year
    soon = (this_year + 10) % 100
    long_ago = (this_year + 60) % 100
    for two_digits, year in ((soon, this_year + 10), (long_ago, this_year + 60 - 100)):
        value = f"Thursday, 01-Jan-{two_digits:02d} 00:00:00 GMT"
        assert parse_http_date(value) == calendar.timegm((year, 1, 1, 0, 0, 0)), value


def test_a_valid_cdn_cache_control_also_sets_expires_aside():
    """RFC 9213 §2.1: once a valid CDN-Cache-Control is used, Cache-Control and Expires are
    both ignored: no lifetime from Expires when the targeted field gives none."""
    response = headers(
        CDN_Cache_Control="public",
        Date="Mon, 23 Nov 2026 09:00:00 GMT",
        Expires="Mon, 23 Nov 2026 09:05:00 GMT",
        ETag='"x"',
    )
    stored = storage(response, NO_HEADERS, 200, 0.0)
    assert stored is not None
    assert stored.lifetime == 0.0  # heuristic: no Last-Modified, no configured TTL


@pytest.mark.parametrize("targeted", ["max-age =100", "max-age= 100", "MaX-aGe=100"])
def test_a_cdn_cache_control_that_is_not_a_structured_field_is_ignored(targeted):
    """RFC 8941 §4.2.2 and RFC 9213 §2.2: invalid, so Cache-Control decides."""
    response = headers(CDN_Cache_Control=targeted, Cache_Control="max-age=1")
    stored = storage(response, NO_HEADERS, 200, 0.0)
    assert stored is not None
    assert stored.lifetime == 1


def test_an_absent_selecting_header_is_not_an_empty_one():
    """RFC 9111 §4.1: a header absent from one request matches only requests without it."""
    absent = variant_key("GET x/", ("accept",), NO_HEADERS)
    empty = variant_key("GET x/", ("accept",), headers(Accept=""))
    assert absent != empty


def test_quoted_strings_lose_their_escapes():
    assert CacheControl.parse(['ext="a\\"b", max-age=5']).directives["ext"] == 'a"b'
