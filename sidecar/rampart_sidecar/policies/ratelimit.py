"""Token-bucket rate limiting per client key (the client's IP, or a header's value)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from rampart_common.sidecar_settings import RateLimitSettings

__all__ = ["RateLimiter"]


class RateLimiter:
    """``check(key)`` returns 0 when the request may pass, else seconds until it could.

    >>> from rampart_common.sidecar_settings import RateLimitSettings
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
        # Typed here: compiled, the settings are Any, and a declared type is native.
        self.enabled: bool = settings.requests_per_second > 0
        self._rate: float = float(settings.requests_per_second)
        self._capacity = float(settings.bucket_size)
        self._max_keys: int = settings.max_keys
        self._clock = clock
        header: str = settings.key.removeprefix("header:")
        self.header = None if settings.key == "client-ip" else header
        # key -> [tokens, last refill time], updated in place; least recently used first.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def check(self, key: str) -> float:
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = [self._capacity, now]
            if len(buckets) > self._max_keys:
                # A forgotten key starts again with a full bucket, which errs on
                # the side of serving; the bound is what keeps memory fixed under
                # a flood of distinct keys.
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(key)
        tokens = min(self._capacity, bucket[0] + (now - bucket[1]) * self._rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self._rate

    @staticmethod
    def retry_after(wait: float) -> int:
        return max(1, math.ceil(wait))
