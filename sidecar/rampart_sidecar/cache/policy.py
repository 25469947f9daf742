"""What a shared cache may store and for how long (RFC 9111), as pure functions.

Deliberately stricter than the RFC where being wrong would serve one user's
response to another:
  * never stores a response carrying ``Set-Cookie``;
  * never stores a response to a request with ``Authorization`` unless the
    response says ``public`` or ``s-maxage``;
  * never stores ``private``, ``no-store`` or ``no-cache`` responses (the
    sidecar does not revalidate), nor ``Vary: *``;
  * never stores partial content or answers to range requests.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from multidict import CIMultiDictProxy
from yarl import URL

from ..config import CacheSettings

__all__ = [
    "CACHEABLE_STATUSES",
    "SAFE_METHODS",
    "CacheControl",
    "RequestPlan",
    "default_ttl_for",
    "freshness_lifetime",
    "invalidated_targets",
    "path_of_key",
    "plan_request",
    "primary_key",
    "variant_key",
]

# Statuses a cache may store (RFC 9110 section 15.1 "heuristically cacheable"),
# less 206: range handling is not worth its risk here.
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class CacheControl:
    directives: Mapping[str, str | None]

    @classmethod
    def parse(cls, values: list[str]) -> CacheControl:
        directives: dict[str, str | None] = {}
        for value in values:
            for part in value.split(","):
                name, sep, argument = part.strip().partition("=")
                if name:
                    directives[name.lower()] = argument.strip().strip('"') if sep else None
        return cls(directives)

    def __contains__(self, name: str) -> bool:
        return name in self.directives

    def seconds(self, name: str) -> int | None:
        """A delta-seconds argument; a malformed one counts as 0 (RFC 9111 section 1.2.2)."""
        if name not in self.directives:
            return None
        argument = self.directives[name]
        if argument is None or not argument.isdigit():
            return 0
        return int(argument)


@dataclass(frozen=True, slots=True)
class RequestPlan:
    """What the cache may do for one request."""

    lookup: bool  # may answer from the cache
    store: bool  # may store the answer
    key: str = ""


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
    selected = "\n".join(f"{name}:{','.join(headers.getall(name, []))}" for name in vary)
    digest = hashlib.sha256(f"{generation}\n{selected}".encode()).hexdigest()[:32]
    return f"{primary} #{digest}"


# Methods that change nothing (RFC 9110 section 9.2.1); any other invalidates.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


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


_NO_CACHE = RequestPlan(lookup=False, store=False)
_USE_CACHE = RequestPlan(lookup=True, store=True)


def plan_request(method: str, headers: CIMultiDictProxy[str]) -> RequestPlan:
    if method not in CACHEABLE_METHODS or "Range" in headers:
        return _NO_CACHE
    if "Cache-Control" not in headers and "Pragma" not in headers:
        return _USE_CACHE  # most requests: nothing to parse
    control = CacheControl.parse(headers.getall("Cache-Control", []))
    if "no-store" in control:
        return _NO_CACHE
    refresh = (
        "no-cache" in control
        or control.seconds("max-age") == 0
        or "no-cache" in headers.get("Pragma", "").lower()
    )
    return RequestPlan(lookup=not refresh, store=True)


def freshness_lifetime(
    response_headers: CIMultiDictProxy[str],
    request_headers: CIMultiDictProxy[str],
    status: int,
    default_ttl: float,
) -> tuple[float, CacheControl] | None:
    """Seconds the response stays fresh, or None when it must not be stored."""
    if status not in CACHEABLE_STATUSES:
        return None
    if "Set-Cookie" in response_headers or response_headers.get("Vary", "").strip() == "*":
        return None
    control = CacheControl.parse(response_headers.getall("Cache-Control", []))
    if "no-store" in control or "private" in control or "no-cache" in control:
        return None
    if "Authorization" in request_headers and not ("public" in control or "s-maxage" in control):
        return None
    lifetime: float | None = control.seconds("s-maxage")
    if lifetime is None:
        lifetime = control.seconds("max-age")
    if lifetime is None and "Expires" in response_headers:
        lifetime = _expires_in(response_headers)
    if lifetime is None:
        lifetime = default_ttl  # no caching headers at all: the configured TTL, if any
    return (lifetime, control) if lifetime > 0 else None


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


def _expires_in(headers: CIMultiDictProxy[str]) -> float:
    try:
        expires = parsedate_to_datetime(headers["Expires"])
        date = parsedate_to_datetime(headers["Date"]) if "Date" in headers else None
    except (TypeError, ValueError):
        return 0.0  # an invalid Expires means already expired (RFC 9111 section 5.3)
    if expires.tzinfo is None or (date is not None and date.tzinfo is None):
        return 0.0
    if date is None:
        date = datetime.datetime.now(datetime.UTC)
    return (expires - date).total_seconds()
