"""The sidecar's response cache: an in-memory LRU in front of Redis.

``http.ResponseCache`` is what the proxy uses; ``policy`` holds the RFC 9111
rules as pure functions; ``memory`` and ``redis`` are the two tiers behind the
``backend.CacheBackend`` Protocol, and ``tiered`` is the one place that puts
them together.
"""

from .backend import CacheBackend
from .entry import CacheEntry, VaryMarker
from .http import ResponseCache
from .memory import MemoryBackend
from .redis import RedisBackend
from .tiered import TieredCache

__all__ = [
    "CacheBackend",
    "CacheEntry",
    "MemoryBackend",
    "RedisBackend",
    "ResponseCache",
    "TieredCache",
    "VaryMarker",
]
