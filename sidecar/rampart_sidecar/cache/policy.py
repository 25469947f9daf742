"""What a shared cache may store, for how long, and for whom (RFC 9111), as pure functions.

Deliberately stricter than the RFC where being wrong would serve one user's
response to another: never stores a response carrying ``Set-Cookie``, nor one
to a request with ``Authorization`` unless it says ``public``, ``s-maxage``
or ``must-revalidate``. docs/sidecar.md ("Response cache") is the user's
account of the rules; docs/benchmarks.md measures them against the public
conformance suite.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from multidict import CIMultiDictProxy
from yarl import URL

from rampart_common.sidecar_settings import CacheSettings

__all__ = [
    "NEVER_STORED",
    "SAFE_METHODS",
    "CacheControl",
    "RequestPlan",
    "default_ttl_for",
    "invalidated_targets",
    "path_of_key",
    "plan_plain_request",
    "plan_request",
    "primary_key",
    "variant_key",
]

# Statuses whose responses may be given a heuristic lifetime (RFC 9110 section
# 15.1), less 206: partial content is never stored. Any other final status may
# be stored only with an explicit lifetime.
HEURISTIC_STATUSES: Final = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# Statuses whose meaning this cache knows, for ``must-understand`` (RFC 9111 section 5.2.2.3).
UNDERSTOOD_STATUSES: Final = frozenset(
    {200, 203, 204, 300, 301, 302, 303, 307, 308, 400, 403, 404, 405, 410, 414, 500, 501, 502}
    | {503, 504}
)
NEVER_STORED: Final = frozenset({206, 304})
CACHEABLE_METHODS: Final = frozenset({"GET", "HEAD"})
# A heuristic lifetime is this share of the time since Last-Modified (RFC 9111 section 4.2.2).
HEURISTIC_FRACTION: Final = 0.1
# Directives that forbid answering with a stale response (RFC 9111 sections 4.2.4, 5.2.2).
_NO_STALE: Final = ("must-revalidate", "proxy-revalidate", "s-maxage", "no-cache")
# Delta-seconds beyond this are this (RFC 9111 section 1.2.2).
_MAX_DELTA: Final = 2**31

_HTTP_DATE: Final = (
    # IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    re.compile(
        r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) ([A-Za-z]{3}) (\d{4}) "
        r"(\d{2}):(\d{2}):(\d{2}) GMT",
        re.IGNORECASE | re.ASCII,
    ),
    # obsolete RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    re.compile(
        r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), "
        r"(\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT",
        re.IGNORECASE | re.ASCII,
    ),
)
# asctime(): Sun Nov  6 08:49:37 1994
_ASCTIME: Final = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})",
    re.IGNORECASE | re.ASCII,
)
# delta-seconds (RFC 9111 section 1.2.2): ASCII digits only; "²" is a digit to str.isdigit.
_DELTA_SECONDS: Final = re.compile(r"[0-9]+")
_MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}


def parse_http_date(value: str) -> float | None:
    """An HTTP-date (RFC 9110 section 5.6.7) as a timestamp; None for anything else.

    Strict, as a recipient must be: "UTC", a two-digit year outside RFC 850's
    form, a missing comma or an extra space make it invalid. Case is forgiven.
    """
    value = value.strip()
    for number, pattern in enumerate(_HTTP_DATE):
        match = pattern.fullmatch(value)
        if match is not None:
            day, month, year, hour, minute, second = match.groups()
            full_year = int(year)
            if number == 1:
                full_year = _rfc850_year(full_year)
            return _timestamp(full_year, month, day, hour, minute, second)
    match = _ASCTIME.fullmatch(value)
    if match is not None:
        month, day, hour, minute, second, year = match.groups()
        return _timestamp(int(year), month, day.strip(), hour, minute, second)
    return None


def _rfc850_year(two_digits: int) -> int:
    """RFC 9110 section 5.6.7: a two-digit year more than 50 years in the future is the
    most recent past year with those digits."""
    this_year = datetime.datetime.now(datetime.UTC).year
    year = this_year - this_year % 100 + two_digits
    if year > this_year + 50:
        year -= 100
    elif year <= this_year - 50:
        year += 100
    return year


def _timestamp(
    year: int, month: str, day: str, hour: str, minute: str, second: str
) -> float | None:
    number = _MONTHS.get(month.lower())
    if number is None:
        return None
    try:
        moment = datetime.datetime(
            year, number, int(day), int(hour), int(minute), int(second), tzinfo=datetime.UTC
        )
    except ValueError:
        return None
    return moment.timestamp()


def parse_age(values: list[str]) -> int:
    """The ``Age`` (RFC 9111 section 5.1): the first member of the first field; 0 when
    it is not delta-seconds, which is as if there were none."""
    if not values:
        return 0
    first = values[0].split(",", 1)[0].split(";", 1)[0].strip()
    return min(int(first), _MAX_DELTA) if _DELTA_SECONDS.fullmatch(first) else 0


@dataclass(frozen=True, slots=True)
class CacheControl:
    directives: Mapping[str, str | None]
    targeted: bool = False  # read from CDN-Cache-Control (RFC 9213), not Cache-Control

    @classmethod
    def parse(cls, values: list[str]) -> CacheControl:
        """Directives by lower-case name; a quoted string is one argument, whatever commas
        or ``max-age=`` it holds. A directive given twice keeps its first value
        (RFC 9111 section 4.2.1); one with a space before its ``=`` is not one."""
        directives: dict[str, str | None] = {}
        for value in values:
            for part in _split_directives(value):
                raw, sep, argument = part.partition("=")
                name = raw.lower()
                if not name or name != name.strip() or " " in name:
                    continue
                if name not in directives:
                    directives[name] = _unquote(argument) if sep else None
        return cls(directives)

    def __contains__(self, name: str) -> bool:
        return name in self.directives

    def seconds(self, name: str) -> int | None:
        """A delta-seconds argument; a malformed one counts as 0 (RFC 9111 section 1.2.2)."""
        if name not in self.directives:
            return None
        argument = self.directives[name]
        if argument is None or not _DELTA_SECONDS.fullmatch(argument):
            return 0
        return min(int(argument), _MAX_DELTA)

    @property
    def forbids_stale(self) -> bool:
        return any(name in self.directives for name in _NO_STALE)


def _split_directives(value: str) -> list[str]:
    """Split on commas that are not inside a quoted string."""
    if '"' not in value:  # nearly always: no need to walk it character by character
        return [part.strip() for part in value.split(",") if part.strip()]
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _unquote(argument: str) -> str:
    """A quoted-string's content, its backslash escapes undone (RFC 9110 section 5.6.4)."""
    # "max-age = 60" (spaces around "=") is not a valid directive: kept as is, so invalid.
    if len(argument) >= 2 and argument[0] == argument[-1] == '"':
        return re.sub(r"\\(.)", r"\1", argument[1:-1])
    return argument


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """What the cache may do for one request, from its Cache-Control (RFC 9111 section 5.2.1)."""

    lookup: bool  # may answer from the cache
    store: bool  # may store the answer
    key: str = ""
    max_age: int | None = None  # an entry older than this is not used
    min_fresh: int = 0  # an entry must stay fresh this much longer to be used
    max_stale: float = 0.0  # a stale entry may be used this long after it went stale
    only_if_cached: bool = False  # never go upstream: 504 when nothing stored will do

    def accepts(self, age: float, fresh_for: float, stale_allowed: bool) -> bool:
        """Whether an entry of ``age`` seconds, fresh for ``fresh_for`` more (negative:
        stale that long), may answer this request."""
        if self.max_age is not None and age > self.max_age:
            return False
        if fresh_for > 0:
            return fresh_for >= self.min_fresh
        return stale_allowed and -fresh_for <= self.max_stale


def path_of_key(key: str) -> str:
    """The path and query inside a key made by ``primary_key`` or ``variant_key``."""
    rest = key.partition(" ")[2]
    path = rest[rest.find("/") :] if "/" in rest else ""
    return path.partition(" #")[0]


def primary_key(method: str, host: str, target: str) -> str:
    """``GET example.com/path?query``: method, host, path and query, as sent."""
    return f"{method} {host.lower()}{target}"


def variant_key(
    primary: str, vary: tuple[str, ...], headers: CIMultiDictProxy[str], generation: str = ""
) -> str:
    """The key of the variant that ``headers`` select among those ``Vary`` names.

    ``generation`` is the ``VaryMarker``'s: a marker written after an
    invalidation has a new one, so the variants stored before it cannot be
    reached again, wherever they still are.
    """
    selected = "\n".join(f"{name}{_normalised(headers.getall(name, []))}" for name in vary)
    digest = hashlib.sha256(f"{generation}\n{selected}".encode()).hexdigest()[:32]
    return f"{primary} #{digest}"


def _normalised(values: list[str]) -> str:
    """A selecting header's values as one list, without the whitespace around its members:
    ``a,b``, ``a, b`` and two field lines select the same variant; an absent header
    selects another variant than an empty one (RFC 9111 section 4.1)."""
    if not values:
        return "\x00"
    return ":" + ",".join(member.strip() for value in values for member in value.split(","))


# Methods that change nothing (RFC 9110 section 9.2.1); any other invalidates.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def invalidated_targets(host: str, target: str, status: int, locations: list[str]) -> list[str]:
    """The targets an unsafe request's answer invalidates (RFC 9111 section 4.4).

    Its own, and those ``Location`` and ``Content-Location`` name on the same
    host, once the answer is not an error (2xx or 3xx). A location on another
    host is left alone: one origin must not empty another's entries.
    """
    if not 200 <= status < 400:
        return []
    targets = [target]
    base = URL(f"http://{host}{target}") if host else URL(target)
    for location in locations:
        try:
            resolved = base.join(URL(location))
        except ValueError:
            continue
        if resolved.is_absolute() and (resolved.host or "").lower() != (base.host or "").lower():
            continue
        if resolved.port != base.port:
            continue
        path = resolved.raw_path_qs
        if path.startswith("/") and path not in targets:
            targets.append(path)
    return targets


_NO_CACHE: Final = RequestPlan(lookup=False, store=False)
_USE_CACHE: Final = RequestPlan(lookup=True, store=True)
_RANGE: Final = RequestPlan(lookup=True, store=False)


def plan_plain_request(method: str) -> RequestPlan:
    """``plan_request`` for a request without Cache-Control, Pragma or Range: most of them,
    told apart from their fields' names alone (``RequestHead.cache_fields``)."""
    return _USE_CACHE if method in CACHEABLE_METHODS else _NO_CACHE


def plan_request(method: str, headers: CIMultiDictProxy[str]) -> RequestPlan:
    if method not in CACHEABLE_METHODS:
        return _NO_CACHE
    if "Range" in headers:
        # Answered from a whole stored response when there is one; never stored.
        return _RANGE if method == "GET" else _NO_CACHE
    if "Cache-Control" not in headers and "Pragma" not in headers:
        return _USE_CACHE  # most requests: nothing to parse
    control = CacheControl.parse(headers.getall("Cache-Control", []))
    if "no-store" in control:
        return _NO_CACHE
    max_age = control.seconds("max-age")
    refresh = "no-cache" in control or max_age == 0
    if "Cache-Control" not in headers and "no-cache" in headers.get("Pragma", "").lower():
        refresh = True  # HTTP/1.0's no-cache, only without Cache-Control (RFC 9111 5.4)
    max_stale: float = 0.0
    if "max-stale" in control:
        # Without a value: any staleness (RFC 9111 section 5.2.1.2).
        given = control.directives["max-stale"]
        max_stale = float("inf") if given is None else float(control.seconds("max-stale") or 0)
    return RequestPlan(
        lookup=not refresh,
        store=True,
        max_age=max_age,
        min_fresh=control.seconds("min-fresh") or 0,
        max_stale=max_stale,
        only_if_cached="only-if-cached" in control,
    )


@dataclass(frozen=True, slots=True)
class Storage:
    """How a response may be stored: for how long fresh, and what it allows once stale."""

    lifetime: float  # seconds fresh from its generation; 0: usable only after revalidating
    control: CacheControl
    stale_allowed: bool  # may answer stale (max-stale, stale-if-error)
    heuristic: bool = False


def has_validator(response_headers: CIMultiDictProxy[str]) -> bool:
    return "ETag" in response_headers or "Last-Modified" in response_headers


def storage(
    response_headers: CIMultiDictProxy[str],
    request_headers: CIMultiDictProxy[str],
    status: int,
    default_ttl: float,
    now: float | None = None,
    cookies: bool = False,
) -> Storage | None:
    """Whether a response may be stored (RFC 9111 section 3), and how; None when not.

    Stricter than the RFC where being wrong would serve one user's response to
    another: never with ``Set-Cookie`` unless ``cookies`` (``cache.setCookie``
    strip or store) says the operator chose otherwise. A response that is stale from the start
    (``max-age=0``, ``no-cache``, an invalid ``Expires``) is kept only with a
    validator, to be revalidated rather than fetched whole.
    """
    if status < 200 or status > 599 or status in NEVER_STORED:
        return None
    if "Set-Cookie" in response_headers and not cookies:
        return None
    if any(
        member.strip() == "*"
        for value in response_headers.getall("Vary", [])
        for member in value.split(",")
    ):
        return None
    control = _response_control(response_headers)
    if "must-understand" in control:
        if status not in UNDERSTOOD_STATUSES:
            return None
    elif "no-store" in control:
        return None
    if "private" in control:
        return None
    if "Authorization" in request_headers and not any(
        name in control for name in ("public", "s-maxage", "must-revalidate")
    ):
        return None
    stale_allowed = not control.forbids_stale
    lifetime = _explicit_lifetime(response_headers, control, now)
    heuristic = False
    if lifetime is None:
        if status not in HEURISTIC_STATUSES and "public" not in control:
            return None
        heuristic = True
        lifetime = _heuristic_lifetime(response_headers, now)
        if lifetime is None:
            lifetime = default_ttl  # the configured TTL, where the route has one
    if "no-cache" in control:
        lifetime = 0.0  # stored, but every use revalidates
    if lifetime <= 0 and not has_validator(response_headers):
        return None
    return Storage(max(lifetime, 0.0), control, stale_allowed, heuristic)


def _response_control(headers: CIMultiDictProxy[str]) -> CacheControl:
    """The directives this cache obeys: ``CDN-Cache-Control`` when the origin sent a valid
    one (RFC 9213: it is for caches like this one, and replaces Cache-Control), else
    ``Cache-Control``."""
    targeted = headers.getall("CDN-Cache-Control", [])
    if targeted:
        control = _structured_control(targeted)
        if control is not None:
            return control
    return CacheControl.parse(headers.getall("Cache-Control", []))


def _structured_control(values: list[str]) -> CacheControl | None:
    """A Structured Field Dictionary (RFC 8941), as RFC 9213 reads it; None when invalid,
    which makes the whole field ignored."""
    directives: dict[str, str | None] = {}
    for part in _split_directives(",".join(values)):
        name, sep, argument = part.partition("=")
        # Keys are lower case and nothing may stand around "=" (RFC 8941 section 4.2.2).
        if not re.fullmatch(r"[a-z*][a-z0-9_.*-]*", name):
            return None
        if not sep:
            directives[name] = None
            continue
        argument = argument.split(";", 1)[0]
        if re.fullmatch(r"-?[0-9]{1,15}", argument):
            if argument.startswith("-") and name in _DELTAS:
                return None
            directives[name] = argument
        elif re.fullmatch(r'"[^"\\]*"', argument):
            if name in ("max-age", "s-maxage"):
                return None  # a string where an integer must be
            directives[name] = argument[1:-1]
        elif re.fullmatch(r"\?[01]|[A-Za-z*][A-Za-z0-9_.:%*/-]*", argument):
            if name in ("max-age", "s-maxage"):
                return None
            directives[name] = argument
        else:
            return None
    return CacheControl(directives, targeted=True)


_DELTAS: Final = frozenset({"max-age", "s-maxage", "stale-if-error", "stale-while-revalidate"})


def _explicit_lifetime(
    headers: CIMultiDictProxy[str], control: CacheControl, now: float | None = None
) -> float | None:
    lifetime = control.seconds("s-maxage")
    if lifetime is None:
        lifetime = control.seconds("max-age")
    if lifetime is not None:
        return float(lifetime)
    if control.targeted:
        return None  # RFC 9213 section 2.1: with a valid CDN-Cache-Control, Expires is ignored
    if "Expires" in headers:
        return _expires_in(headers, now)
    return None


def _heuristic_lifetime(headers: CIMultiDictProxy[str], now: float | None) -> float | None:
    """A tenth of the time since ``Last-Modified`` (RFC 9111 section 4.2.2), if it has one."""
    if "Last-Modified" not in headers:
        return None
    modified = parse_http_date(headers["Last-Modified"])
    if modified is None:
        return None
    date = parse_http_date(headers["Date"]) if "Date" in headers else None
    reference = date if date is not None else (now if now is not None else time.time())
    return max(0.0, (reference - modified) * HEURISTIC_FRACTION)


def default_ttl_for(settings: CacheSettings, path: str) -> float:
    """The TTL for responses without caching headers on ``path``; 0 means don't cache them."""
    if not settings.routes:
        return settings.ttl
    best: tuple[int, float] | None = None
    for route in settings.routes:
        if path.startswith(route.path_prefix) and (
            best is None or len(route.path_prefix) > best[0]
        ):
            # ttl: 0s opts a path out of the default (the app's own headers still count).
            best = (len(route.path_prefix), settings.ttl if route.ttl is None else route.ttl)
    return best[1] if best else 0.0


def _expires_in(headers: CIMultiDictProxy[str], now: float | None = None) -> float:
    """Seconds from ``Date`` (or now) to ``Expires``; an invalid one, or more than one,
    means already expired (RFC 9111 section 5.3)."""
    values = headers.getall("Expires", [])
    expires = parse_http_date(values[0]) if len(values) == 1 else None
    if expires is None:
        return 0.0
    date = parse_http_date(headers["Date"]) if "Date" in headers else None
    if date is None:
        date = now if now is not None else time.time()
    return expires - date


def apparent_age(headers: CIMultiDictProxy[str], received: float) -> float:
    """How old the response already was when it arrived (RFC 9111 section 4.2.3): the
    larger of its ``Age`` and the time since its ``Date``."""
    age = float(parse_age(headers.getall("Age", [])))
    date = parse_http_date(headers["Date"]) if "Date" in headers else None
    if date is not None:
        age = max(age, received - date)
    return age
