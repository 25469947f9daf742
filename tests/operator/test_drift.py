"""When drift checks run: spread over the interval, not all at once."""

from __future__ import annotations

from rampart_operator.handlers import drift_delay


def test_drift_checks_of_a_fleet_are_spread_over_an_interval():
    delay = drift_delay(300.0)
    delays = [delay(uid=f"uid-{index}") for index in range(1000)]
    assert all(300.0 <= value < 600.0 for value in delays)
    assert delay(uid="uid-7") == delays[7]  # fixed per object, across restarts too
    # Ten 30 s slots each get about a tenth of the fleet, not all of it at once.
    slots = [0] * 10
    for value in delays:
        slots[int((value - 300.0) // 30.0)] += 1
    assert min(slots) > 60, slots
    assert max(slots) < 140, slots
