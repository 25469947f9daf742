"""Which backups a retention policy keeps: pure, like restic's ``forget``.

keepLast N       the N newest
keepDaily N      the newest backup of each of the N newest days that have one
keepWeekly N     ... of each of the N newest ISO weeks
keepMonthly N    ... of each of the N newest months

A backup kept by any rule stays. With no rule at all, everything stays; and
the newest backup is always kept, so pruning can never leave none.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Policy", "to_delete", "to_keep"]


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    @property
    def empty(self) -> bool:
        return not (self.keep_last or self.keep_daily or self.keep_weekly or self.keep_monthly)


Moment = datetime.datetime


def _newest_per_period(
    times: Sequence[Moment], count: int, period: Callable[[Moment], object]
) -> set[Moment]:
    kept: set[Moment] = set()
    seen: set[object] = set()
    for moment in sorted(times, reverse=True):
        bucket = period(moment)
        if bucket in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(bucket)
        kept.add(moment)
    return kept


def to_keep(times: Sequence[Moment], policy: Policy) -> set[Moment]:
    if not times:
        return set()
    if policy.empty:
        return set(times)
    newest_first = sorted(times, reverse=True)
    kept = set(newest_first[: policy.keep_last])
    kept |= _newest_per_period(times, policy.keep_daily, lambda t: t.date())
    kept |= _newest_per_period(times, policy.keep_weekly, lambda t: t.isocalendar()[:2])
    kept |= _newest_per_period(times, policy.keep_monthly, lambda t: (t.year, t.month))
    kept.add(newest_first[0])
    return kept


def to_delete(times: Sequence[Moment], policy: Policy) -> list[Moment]:
    keep = to_keep(times, policy)
    return sorted(t for t in times if t not in keep)
