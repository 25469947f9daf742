"""A circuit breaker: a state object the proxy consults before every attempt.

closed ──N consecutive failures──▶ open ──openFor elapsed──▶ half-open
  ▲                                  ▲                          │
  └──────K trials all succeed────────┼──────────────────────────┤
                                     └──────any trial fails─────┘

In half-open at most K trial requests are in flight at once; the rest are
refused as if the breaker were open. Outcomes of requests admitted before the
last state change are ignored, so a slow request that started while closed
cannot close a breaker that has since opened.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from rampart_common.sidecar_settings import CircuitBreakerSettings

__all__ = ["BreakerState", "CircuitBreaker", "Permit"]


class BreakerState(enum.IntEnum):
    """Values are the ``rampart_circuit_state`` gauge's."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class Permit:
    generation: int
    trial: bool


class CircuitBreaker:
    def __init__(
        self,
        settings: CircuitBreakerSettings,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        # Typed here: compiled, the settings are Any (their module is not), and an
        # attribute of a declared type is native rather than a boxed object.
        self.enabled: bool = settings.consecutive_failures > 0
        self._threshold: int = settings.consecutive_failures
        self._open_for: float = float(settings.open_for)
        self._trials: int = settings.half_open_requests
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._failures = 0
        self._opened_at = 0.0
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._closed_permit = Permit(0, trial=False)

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() >= self._opened_at + self._open_for:
            self._enter(BreakerState.HALF_OPEN)
        return self._state

    def retry_after(self) -> int:
        """Whole seconds until the breaker lets a trial through (at least 1)."""
        remaining = self._opened_at + self._open_for - self._clock()
        return max(1, math.ceil(remaining))

    def acquire(self) -> Permit | None:
        """A permit to call the upstream, or None when the breaker refuses."""
        state = self.state
        if state is BreakerState.CLOSED:
            return self._closed_permit
        if state is BreakerState.HALF_OPEN and self._trials_in_flight < self._trials:
            self._trials_in_flight += 1
            return Permit(self._generation, trial=True)
        return None

    def record(self, permit: Permit, success: bool) -> None:
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._trials_in_flight -= 1
            if not success:
                self._open()
            else:
                self._trial_successes += 1
                if self._trial_successes >= self._trials:
                    self._enter(BreakerState.CLOSED)
        elif success:
            self._failures = 0
        else:
            self._failures += 1
            if self.enabled and self._failures >= self._threshold:
                self._open()

    def release(self, permit: Permit) -> None:
        """Give back a permit whose attempt ended without a verdict (e.g. cancelled)."""
        if permit.trial and permit.generation == self._generation:
            self._trials_in_flight -= 1

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._enter(BreakerState.OPEN)

    def _enter(self, state: BreakerState) -> None:
        self._state = state
        self._generation += 1
        self._failures = 0
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._closed_permit = Permit(self._generation, trial=False)
        if self._on_change is not None:
            self._on_change(state)
