"""When to retry an attempt, how long to wait first, and how many retries may run at once."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from rampart_common.sidecar_settings import RetrySettings

__all__ = ["RetryBudget", "RetryPolicy"]

_GATEWAY_ERRORS: Final = frozenset({502, 503, 504})


class RetryPolicy:
    """Pure decisions; the proxy owns the loop.

    >>> from rampart_common.sidecar_settings import RetrySettings
    >>> policy = RetrySettings(attempts=2, retry_on=["gateway-error"])
    >>> p = RetryPolicy(policy)
    >>> p.retries_method("GET"), p.retries_method("POST")
    (True, False)
    >>> p.retries_status(503), p.retries_status(500)
    (True, False)
    """

    def __init__(self, settings: RetrySettings, rand: Callable[[], float] = random.random) -> None:
        # Typed here: compiled, the settings are Any, and a declared type is native.
        self.attempts: int = settings.attempts
        per_try: float | None = settings.per_try_timeout
        self.per_try_timeout = None if per_try is None else float(per_try)
        self.max_buffered_body: int = settings.max_buffered_body_bytes
        self._base: float = float(settings.backoff.base)
        self._cap: float = float(settings.backoff.max)
        self._methods = frozenset(settings.methods)
        self._conditions = frozenset(settings.retry_on)
        statuses: set[int] = set(settings.status_codes)
        if "gateway-error" in self._conditions:
            statuses |= _GATEWAY_ERRORS
        if "5xx" in self._conditions:
            statuses |= set(range(500, 600))
        self._statuses = frozenset(statuses)
        self._rand = rand

    def retries_method(self, method: str) -> bool:
        return self.attempts > 0 and method in self._methods

    def retries_status(self, status: int) -> bool:
        return status in self._statuses

    def retries_error(self, retry_on: str) -> bool:
        """``retry_on`` is an ``UpstreamError.retry_on``: connect-failure, reset or timeout.

        A per-try timeout is a gateway error as well (the proxy would answer
        504 for it), so ``gateway-error`` and ``5xx`` retry it too, as in Envoy.
        """
        if retry_on in self._conditions:
            return True
        return retry_on == "timeout" and bool(self._conditions & {"gateway-error", "5xx"})

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**retry)] (retry counts from 0)."""
        return float(self._rand() * min(self._cap, self._base * (2**retry)))


class RetryBudget:
    """Retries in flight may be at most ``budgetPercent`` of requests in flight.

    ``minRetryConcurrency`` retries are always allowed, so a service with
    little traffic can still retry; the percentage is what keeps retries from
    multiplying an outage under load (Envoy's ``retry_budget``).
    """

    def __init__(self, settings: RetrySettings) -> None:
        self._share: float = settings.budget_percent / 100.0
        self._floor: int = settings.min_retry_concurrency
        self.requests_in_flight = 0
        self.retries_in_flight = 0

    def try_acquire(self) -> bool:
        allowed = max(self._floor, int(self.requests_in_flight * self._share))
        if self.retries_in_flight >= allowed:
            return False
        self.retries_in_flight += 1
        return True

    def release(self) -> None:
        self.retries_in_flight -= 1
