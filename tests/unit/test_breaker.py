from __future__ import annotations

from rampart_common.sidecar_settings import CircuitBreakerSettings
from rampart_sidecar.policies import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(failures: int = 3, open_for: float = 10.0, trials: int = 2):
    clock = Clock()
    changes: list[BreakerState] = []
    settings = CircuitBreakerSettings(
        consecutive_failures=failures, open_for=open_for, half_open_requests=trials
    )
    return CircuitBreaker(settings, clock, changes.append), clock, changes


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        permit = b.acquire()
        assert permit is not None
        b.record(permit, success=False)


def test_opens_after_n_consecutive_failures_only():
    b, _, changes = breaker(failures=3)
    fail(b, 2)
    permit = b.acquire()
    assert permit is not None
    b.record(permit, success=True)  # a success resets the count
    fail(b, 2)
    assert b.state is BreakerState.CLOSED
    fail(b, 1)
    assert b.state is BreakerState.OPEN
    assert changes == [BreakerState.OPEN]
    assert b.acquire() is None


def test_retry_after_counts_down_and_is_at_least_one():
    b, clock, _ = breaker(open_for=10)
    fail(b, 3)
    assert b.retry_after() == 10
    clock.now += 9.5
    assert b.retry_after() == 1


def test_half_open_admits_k_trials_and_closes_when_all_succeed():
    b, clock, changes = breaker(trials=2)
    fail(b, 3)
    clock.now += 10
    assert b.state is BreakerState.HALF_OPEN
    first, second = b.acquire(), b.acquire()
    assert first is not None
    assert first.trial
    assert second is not None
    assert second.trial
    assert b.acquire() is None  # a third concurrent trial is refused
    b.record(first, success=True)
    assert b.state is BreakerState.HALF_OPEN
    b.record(second, success=True)
    assert b.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_a_failed_trial_reopens_for_a_full_period():
    b, clock, _ = breaker(trials=2)
    fail(b, 3)
    clock.now += 10
    trial = b.acquire()
    assert trial is not None
    b.record(trial, success=False)
    assert b.state is BreakerState.OPEN
    assert b.retry_after() == 10


def test_outcomes_from_before_a_state_change_are_ignored():
    b, clock, _ = breaker(failures=3, trials=1)
    slow = b.acquire()  # admitted while closed, answers much later
    assert slow is not None
    fail(b, 3)
    clock.now += 10
    trial = b.acquire()
    assert trial is not None
    b.record(slow, success=True)  # must not count as the trial's success
    assert b.state is BreakerState.HALF_OPEN
    b.record(trial, success=True)
    assert b.state is BreakerState.CLOSED


def test_released_trial_frees_its_slot():
    b, clock, _ = breaker(trials=1)
    fail(b, 3)
    clock.now += 10
    trial = b.acquire()
    assert trial is not None
    assert b.acquire() is None
    b.release(trial)
    assert b.acquire() is not None


def test_zero_failures_means_disabled():
    b, _, _ = breaker(failures=0)
    assert not b.enabled
    fail(b, 50)
    assert b.state is BreakerState.CLOSED
