"""A cached response and its wire format.

The format is a length-prefixed JSON head followed by the raw body: compact,
readable with ``redis-cli``, and, unlike pickle, safe to load from a Redis
that someone else can write to.
"""

from __future__ import annotations

import json
import struct
from dataclasses import InitVar, dataclass, field
from typing import Final

from ..headers import ENCODING, ResponseHead

__all__ = ["CacheEntry", "VaryMarker"]

_FORMAT: Final = 1
_HEAD_LENGTH: Final = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A stored response. Its headers are kept only encoded (``head``), as a relayed
    response's are: a hit writes them as they are, and a small entry takes 551
    bytes instead of about 1,200 with its fields as Python strings (seven
    fields, ``tracemalloc``). ``header_pairs()`` decodes them for Redis.
    """

    status: int
    headers: InitVar[tuple[tuple[str, str], ...]]
    body: bytes
    stored_at: float  # wall-clock seconds, comparable across sidecars sharing a Redis
    fresh_until: float
    stale_until: float  # kept until then: to revalidate, or to answer for a failing upstream
    initial_age: float = 0.0  # how old it was when it arrived (Age, or since its Date)
    path: str = ""  # path and query, for invalidation by prefix
    error_until: float | None = None  # may answer for a failing upstream until then
    stale_allowed: bool = True  # False: must-revalidate and the like, never served stale
    head: ResponseHead = field(init=False, repr=False)

    def __post_init__(self, headers: tuple[tuple[str, str], ...]) -> None:
        fields = [(name.encode(*ENCODING), value.encode(*ENCODING)) for name, value in headers]
        object.__setattr__(self, "head", ResponseHead(fields))

    @property
    def usable_for_errors_until(self) -> float:
        return self.stale_until if self.error_until is None else self.error_until

    def field(self, name: str) -> str | None:
        """The first stored field called ``name``, decoded; for validators, on demand."""
        wanted = name.lower()
        for stored, value in self.header_pairs():
            if stored.lower() == wanted:
                return value
        return None

    def header_pairs(self) -> list[tuple[str, str]]:
        """The stored header fields, decoded (Content-Length last)."""
        pairs = []
        for line in self.head.relayed.split(b"\r\n")[:-1]:
            name, _, value = line.partition(b": ")
            pairs.append((name.decode(*ENCODING), value.decode(*ENCODING)))
        if self.head.content_length is not None:
            pairs.append(("Content-Length", str(self.head.content_length)))
        return pairs

    @property
    def size(self) -> int:
        return len(self.body) + len(self.head.relayed) + 64

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until

    def age(self, now: float) -> int:
        return int(self.initial_age + max(0.0, now - self.stored_at))

    def encode(self) -> bytes:
        head = json.dumps(
            {
                "v": _FORMAT,
                "status": self.status,
                "headers": self.header_pairs(),
                "stored_at": self.stored_at,
                "fresh_until": self.fresh_until,
                "stale_until": self.stale_until,
                "initial_age": self.initial_age,
                "path": self.path,
                "error_until": self.error_until,
                "stale_allowed": self.stale_allowed,
            },
            separators=(",", ":"),
        ).encode()
        return _HEAD_LENGTH.pack(len(head)) + head + self.body

    @classmethod
    def decode(cls, data: bytes, cookies: bool = True) -> CacheEntry | VaryMarker:
        """Raise ``ValueError`` on anything that is not an entry this version wrote.

        ``cookies`` False drops ``Set-Cookie``: a sidecar whose ``cache.setCookie`` is
        not ``store`` hands out no cookie that another sharing its Redis stored."""
        if len(data) < _HEAD_LENGTH.size:
            raise ValueError("truncated cache entry")
        (length,) = _HEAD_LENGTH.unpack_from(data)
        try:
            head = json.loads(data[_HEAD_LENGTH.size : _HEAD_LENGTH.size + length])
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError("unreadable cache entry") from error
        if not isinstance(head, dict) or head.get("v") != _FORMAT:
            raise ValueError("cache entry of an unknown format")
        if "vary" in head:
            return VaryMarker(
                tuple(head["vary"]),
                float(head["stale_until"]),
                str(head.get("path", "")),
                str(head.get("generation", "")),
            )
        headers = tuple((str(k), str(v)) for k, v in head["headers"])
        if not cookies:
            headers = tuple(pair for pair in headers if pair[0].lower() != "set-cookie")
        return cls(
            status=int(head["status"]),
            headers=headers,
            body=data[_HEAD_LENGTH.size + length :],
            stored_at=float(head["stored_at"]),
            fresh_until=float(head["fresh_until"]),
            stale_until=float(head["stale_until"]),
            initial_age=float(head["initial_age"]),
            path=str(head["path"]),
            error_until=None if head.get("error_until") is None else float(head["error_until"]),
            stale_allowed=bool(head.get("stale_allowed", True)),
        )


@dataclass(frozen=True, slots=True)
class VaryMarker:
    """Stored under the primary key of a response with ``Vary``: which headers select a variant."""

    headers: tuple[str, ...]  # lower-case names
    stale_until: float
    path: str = ""
    generation: str = ""  # new after an invalidation: see ``policy.variant_key``

    @property
    def size(self) -> int:
        return 64 + sum(len(h) for h in self.headers)

    def encode(self) -> bytes:
        head = json.dumps(
            {
                "v": _FORMAT,
                "vary": self.headers,
                "stale_until": self.stale_until,
                "path": self.path,
                "generation": self.generation,
            },
            separators=(",", ":"),
        ).encode()
        return _HEAD_LENGTH.pack(len(head)) + head
