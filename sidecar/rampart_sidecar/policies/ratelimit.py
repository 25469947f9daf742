"""Token-bucket rate limiting per client key (the client's IP, or a header's value)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from ..config import RateLimitSettings

__all__ = ["RateLimiter"]


class RateLimiter:
    """``check(key)`` returns 0 when the request may pass, else seconds until it could.

    >>> from rampart_sidecar.config import RateLimitSettings
    >>> now = [0.0]
    >>> limiter = RateLimiter(RateLimitSettings(requests_per_second=1, burst=2), lambda: now[0])
    >>> [limiter.check("a"), limiter.check("a"), limiter.check("a") > 0]
    [0.0, 0.0, True]
    >>> now[0] = 1.0; limiter.check("a")
    0.0
    """

    def __init__(
        self, settings: RateLimitSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.enabled = settings.requests_per_second > 0
        self._rate = settings.requests_per_second
        self._capacity = float(settings.bucket_size)
        self._max_keys = settings.max_keys
        self._clock = clock
        header = settings.key.removeprefix("header:")
        self.header = None if settings.key == "client-ip" else header
        # key -> (tokens, last refill time); least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str) -> float:
        now = self._clock()
        tokens, last = self._buckets.pop(key, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._remember(key, tokens - 1.0, now)
            return 0.0
        self._remember(key, tokens, now)
        return (1.0 - tokens) / self._rate

    @staticmethod
    def retry_after(wait: float) -> int:
        return max(1, math.ceil(wait))

    def _remember(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            # A forgotten key starts again with a full bucket, which errs on
            # the side of serving; the bound is what keeps memory fixed under
            # a flood of distinct keys.
            self._buckets.popitem(last=False)
