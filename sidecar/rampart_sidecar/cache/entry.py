"""A cached response and its wire format.

The format is a length-prefixed JSON head followed by the raw body: compact,
readable with ``redis-cli``, and, unlike pickle, safe to load from a Redis
that someone else can write to.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

from ..headers import ENCODING, ResponseHead

__all__ = ["CacheEntry", "VaryMarker"]

_FORMAT = 1
_HEAD_LENGTH = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class CacheEntry:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    stored_at: float  # wall-clock seconds, comparable across sidecars sharing a Redis
    fresh_until: float
    stale_until: float  # the last moment it may answer for a failing upstream
    initial_age: float = 0.0  # the Age the upstream reported
    path: str = ""  # path and query, for invalidation by prefix
    # The headers encoded as a relayed response's are: once per entry, not per hit.
    head: ResponseHead = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = [(name.encode(*ENCODING), value.encode(*ENCODING)) for name, value in self.headers]
        object.__setattr__(self, "head", ResponseHead(fields))

    @property
    def size(self) -> int:
        return len(self.body) + sum(len(k) + len(v) for k, v in self.headers) + 64

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until

    def age(self, now: float) -> int:
        return int(self.initial_age + max(0.0, now - self.stored_at))

    def encode(self) -> bytes:
        head = json.dumps(
            {
                "v": _FORMAT,
                "status": self.status,
                "headers": self.headers,
                "stored_at": self.stored_at,
                "fresh_until": self.fresh_until,
                "stale_until": self.stale_until,
                "initial_age": self.initial_age,
                "path": self.path,
            },
            separators=(",", ":"),
        ).encode()
        return _HEAD_LENGTH.pack(len(head)) + head + self.body

    @classmethod
    def decode(cls, data: bytes) -> CacheEntry | VaryMarker:
        """Raise ``ValueError`` on anything that is not an entry this version wrote."""
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
                tuple(head["vary"]), float(head["stale_until"]), str(head.get("path", ""))
            )
        return cls(
            status=int(head["status"]),
            headers=tuple((str(k), str(v)) for k, v in head["headers"]),
            body=data[_HEAD_LENGTH.size + length :],
            stored_at=float(head["stored_at"]),
            fresh_until=float(head["fresh_until"]),
            stale_until=float(head["stale_until"]),
            initial_age=float(head["initial_age"]),
            path=str(head["path"]),
        )


@dataclass(frozen=True, slots=True)
class VaryMarker:
    """Stored under the primary key of a response with ``Vary``: which headers select a variant."""

    headers: tuple[str, ...]  # lower-case names
    stale_until: float
    path: str = ""

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
            },
            separators=(",", ":"),
        ).encode()
        return _HEAD_LENGTH.pack(len(head)) + head
