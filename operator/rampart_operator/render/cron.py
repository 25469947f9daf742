"""How far apart a cron schedule's runs can be; no I/O.

The restore-drill alert "no successful drill within twice its schedule" needs
the longest gap between two runs of a schedule such as ``0 3 * * 1``. That
is all we need from cron, so it is computed here (five fields: lists,
ranges, steps, names, and the ``@daily`` kind of macro) rather than taken
from a cron library for one function.
"""

from __future__ import annotations

import datetime
import itertools
from functools import lru_cache

__all__ = ["longest_gap"]

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
NAMES = {
    **{month: number for number, month in enumerate(MONTHS, 1)},
    **{day: number for number, day in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _number(text: str) -> int:
    return NAMES[text] if text in NAMES else int(text)


def _values(field: str, low: int, high: int) -> frozenset[int]:
    found: set[int] = set()
    for part in field.lower().split(","):
        span, _, step = part.partition("/")
        if span in ("*", ""):
            start, end = low, high
        elif "-" in span:
            first, last = span.split("-", 1)
            start, end = _number(first), _number(last)
        else:
            start = _number(span)
            end = high if step else start
        if not low <= start <= end <= high:
            raise ValueError(f"{part}: outside {low}-{high}")
        found.update(range(start, end + 1, int(step) if step else 1))
    return frozenset(found)


@lru_cache(maxsize=256)
def longest_gap(schedule: str) -> float:
    """Seconds between the two runs furthest apart, over a year of the schedule.

    >>> longest_gap("0 3 * * *") / 3600
    24.0
    >>> longest_gap("0 3 * * 1") / 86400
    7.0
    >>> longest_gap("*/15 * * * *") / 60
    15.0
    """
    fields = MACROS.get(schedule.strip(), schedule).split()
    if len(fields) != 5:
        raise ValueError(f"{schedule!r}: expected five fields")
    minutes, hours, days, months, weekdays = (
        _values(f, low, high) for f, (low, high) in zip(fields, BOUNDS, strict=True)
    )
    weekdays = frozenset(d % 7 for d in weekdays)  # 7 is Sunday too
    # Vixie cron: when both day fields are restricted, either one matching will do.
    either = fields[2] != "*" and fields[4] != "*"
    start = datetime.date(2027, 1, 1)  # a fixed year: the same answer on every call
    times = sorted(h * 60 + m for h in hours for m in minutes)
    runs: list[float] = []
    for offset in range(366 + 7):
        day = start + datetime.timedelta(days=offset)
        on_day = day.day in days
        on_weekday = (day.isoweekday() % 7) in weekdays
        if day.month in months and ((on_day or on_weekday) if either else on_day and on_weekday):
            base = offset * 86400.0
            runs += [base + t * 60 for t in times]
    if len(runs) < 2:
        raise ValueError(f"{schedule!r}: runs less than twice a year")
    return max(b - a for a, b in itertools.pairwise(runs))
