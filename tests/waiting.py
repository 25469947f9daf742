"""The one way every test tier (and the benchmarks) waits: on a condition, never a sleep.

``wait_until`` polls a condition until it is truthy and returns what it
returned; past ``timeout`` it fails the test, saying what it waited for and
the condition's last answer. ``async_wait_until`` is the same inside an event
loop, for conditions that are plain or awaitable.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["async_wait_until", "wait_until"]

T = TypeVar("T")


def _failure(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"{what}: not within {timeout:g} s (last: {last!r:.300})")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """What ``condition`` returns once it is truthy.

    >>> answers = iter([0, "", "ready"])
    >>> wait_until(lambda: next(answers), interval=0)
    'ready'
    """
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() >= deadline:
            raise _failure(what, timeout, last)
        time.sleep(interval)
        last = condition()
    return last


async def async_wait_until(
    condition: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """``wait_until`` for a running event loop; ``condition`` may return an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise _failure(what, timeout, last)
        await asyncio.sleep(interval)
