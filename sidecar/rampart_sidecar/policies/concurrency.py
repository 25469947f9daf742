"""A limit on requests in flight, with a bounded FIFO queue in front of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from rampart_common.sidecar_settings import ConcurrencySettings

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter:
    """``await acquire(wait)`` is True when admitted; every admission needs one ``release()``.

    Beyond ``maxInFlight`` a request waits in a queue of at most ``maxQueued``
    for at most ``wait`` seconds; a full queue or an expired wait refuses it.
    """

    def __init__(self, settings: ConcurrencySettings) -> None:
        # Typed here: compiled, the settings are Any, and a declared type is native.
        self.enabled: bool = settings.max_in_flight > 0
        self.limit: int = settings.max_in_flight
        self._max_queued: int = settings.max_queued
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def utilization(self) -> float:
        return self.in_flight / self.limit if self.enabled else 0.0

    def try_acquire(self) -> bool:
        """Admit without waiting, if there is a free slot and nobody queued for one."""
        if not self.enabled or (self.in_flight < self.limit and not self._waiters):
            self.in_flight += 1
            return True
        return False

    async def acquire(self, wait: float) -> bool:
        if self.try_acquire():
            return True
        if len(self._waiters) >= self._max_queued:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(wait):
                await waiter
        except TimeoutError:
            # The slot may have been handed over just as the wait ran out: keep it.
            return waiter.done() and not waiter.cancelled()
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # admitted just as the client went away: pass the slot on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        return True

    def release(self) -> None:
        if not self.enabled:
            self.in_flight -= 1
            return
        # Hand the slot straight to the oldest waiter, so in_flight never dips
        # and a newcomer cannot overtake the queue.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1
