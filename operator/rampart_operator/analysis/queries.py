"""The checks of one analysis and how their values are judged; no I/O.

Built-in checks read the sidecar's histogram of requests, as labelled by the
PodMonitor (``namespace``, ``hardenedservice``, ``track``), for the canary's
pods only:

- ``requests``: how many the canary answered in the window; fewer than
  ``minRequests`` makes the whole analysis inconclusive (no verdict on noise);
- ``errorRate``: the share of 5xx answers (threshold default 1%);
- ``latencyP95``: the 95th percentile of request time, when a threshold is set.

User checks are PromQL with ``max`` and/or ``min``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rampart_common.durations import parse_duration

from ..api.canary import Analysis, Thresholds
from ..canary import Verdict, show_value
from ..render.alerts import BUCKETS, REQUESTS

__all__ = ["BUILT_IN_CHECKS", "DEFAULT_ERROR_RATE", "Check", "checks_for", "judge"]

BUILT_IN_CHECKS = frozenset({"requests", "errorRate", "latencyP95"})
DEFAULT_ERROR_RATE = 0.01


@dataclass(frozen=True)
class Check:
    name: str
    query: str
    max: float | None = None
    min: float | None = None


def checks_for(namespace: str, name: str, analysis: Analysis) -> list[Check]:
    window = analysis.effective_window
    sel = f'namespace="{namespace}", hardenedservice="{name}", track="canary"'
    thresholds = analysis.thresholds or Thresholds()
    checks = [
        Check("requests", f"sum(increase({REQUESTS}{{{sel}}}[{window}]))"),
        Check(
            "errorRate",
            f'(sum(rate({REQUESTS}{{{sel}, code=~"5.."}}[{window}])) or vector(0))\n'
            f"/ sum(rate({REQUESTS}{{{sel}}}[{window}]))",
            max=DEFAULT_ERROR_RATE if thresholds.error_rate is None else thresholds.error_rate,
        ),
    ]
    if thresholds.latency_p95 is not None:
        checks.append(
            Check(
                "latencyP95",
                f"histogram_quantile(0.95, sum by (le) (rate({BUCKETS}{{{sel}}}[{window}])))",
                max=parse_duration(thresholds.latency_p95),
            )
        )
    for metric in analysis.metrics or []:
        query = (
            metric.query.replace("{{namespace}}", namespace)
            .replace("{{name}}", name)
            .replace("{{window}}", window)
        )
        checks.append(Check(metric.name, query, metric.max, metric.min))
    return checks


def judge(
    at: float,
    checks: list[Check],
    values: dict[str, float | None],
    min_requests: int,
    window: str,
    errors: tuple[str, ...] = (),
) -> Verdict:
    """Failed if any check is out of bounds; otherwise inconclusive if any has no data."""
    known = {name: value for name, value in values.items() if value is not None}
    if errors:
        return Verdict(at, None, known, errors)
    requests = values.get("requests")
    if requests is None or requests < min_requests:
        seen = 0 if requests is None else round(requests)
        return Verdict(
            at, None, known, (f"{seen} canary requests in {window}, fewer than {min_requests}",)
        )
    failures: list[str] = []
    missing: list[str] = []
    for check in checks:
        value = values.get(check.name)
        if check.max is None and check.min is None:
            continue
        if value is None:
            missing.append(f"{check.name}: no data")
        elif check.max is not None and value > check.max:
            failures.append(f"{check.name} {_out_of(check.name, value, '>', check.max)}")
        elif check.min is not None and value < check.min:
            failures.append(f"{check.name} {_out_of(check.name, value, '<', check.min)}")
    if failures:
        return Verdict(at, False, known, tuple(failures))
    if missing:
        return Verdict(at, None, known, tuple(missing))
    return Verdict(at, True, known)


def _out_of(name: str, value: float, relation: str, bound: float) -> str:
    return f"{show_value(name, value)} {relation} {show_value(name, bound)}"
