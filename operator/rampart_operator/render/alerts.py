"""Prometheus rules for one HardenedService, from the sidecar's own metrics; no I/O.

Every alert carries ``namespace`` and ``hardenedservice`` labels (what
Alertmanager routes on, and what the operator's automatic rollback matches),
a ``severity`` (``critical`` pages, ``warning`` makes a ticket), the user's
``alerts.labels``, and ``summary``, ``description`` and ``runbook_url``
annotations. Every rule is evaluated on series the sidecar exports and the
PodMonitor labels; docs/alerts.md explains each alert and what to do.

SLO alerts follow the multi-window, multi-burn-rate method of the Google SRE
workbook: an alert fires when both a long and a short window burn the error
budget faster than a factor, the short window making it stop soon after the
burning does. The workbook's factors (14.4, 6, 3, 1) are for a 30-day window;
they are derived here from the share of the budget each pair may consume
(2% in 1h, 5% in 6h, 10% in 1d, 10% in 3d), so any window scales correctly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rampart_common.durations import format_duration, parse_duration

from ..alertproof import PROOF_LABEL
from ..api.alerts import AlertsSpec
from ..api.backup import Drill
from ..api.spec import HardenedServiceSpec
from .cron import longest_gap

__all__ = [
    "BURN_WINDOWS",
    "OWN_LABELS",
    "RULE_NAMES",
    "burn_factor",
    "rule_groups",
    "seconds_text",
]

REQUESTS = "rampart_http_request_duration_seconds_count"
BUCKETS = "rampart_http_request_duration_seconds_bucket"
CIRCUIT = "rampart_circuit_state"
CACHE = "rampart_cache_requests_total"
BY = "namespace, hardenedservice"
# Set by the operator on every rule: what Alertmanager routes on and the rollback matches.
OWN_LABELS = ("namespace", "hardenedservice", "severity", PROOF_LABEL)
DEFAULT_RUNBOOK = "https://github.com/rampart-dev/rampart/blob/main/docs/alerts.md"

# rule_groups' ``alert``: (name, expr, severity, for, summary, description) -> a rule.
AlertRule = Callable[[str, str, str, str, str, str], dict[str, Any]]


@dataclass(frozen=True)
class BurnWindow:
    long: str
    short: str
    budget_share: float  # of the whole window's error budget, spent within ``long``


BURN_WINDOWS = {
    "RampartSLOBurnRateFast": (
        "critical",
        (BurnWindow("1h", "5m", 0.02), BurnWindow("6h", "30m", 0.05)),
    ),
    "RampartSLOBurnRateSlow": (
        "warning",
        (BurnWindow("1d", "2h", 0.10), BurnWindow("3d", "6h", 0.10)),
    ),
}
RULE_NAMES = (
    "RampartHighErrorRate",
    "RampartHighLatencyP95",
    "RampartCircuitOpen",
    "RampartCacheHitRatioCollapse",
    "RampartBackupFailed",
    "RampartBackupStale",
    "RampartRestoreDrillFailed",
    "RampartRestoreDrillMissing",
    "RampartRestoreDrillRTOExceeded",
    "RampartRestoreDrillRPOExceeded",
    *BURN_WINDOWS,
)


def burn_factor(window: BurnWindow, slo_window: str) -> float:
    """How many times faster than "exactly on budget" the long window may burn.

    >>> burn_factor(BurnWindow("1h", "5m", 0.02), "30d")
    14.4
    """
    return round(window.budget_share * parse_duration(slo_window) / parse_duration(window.long), 6)


def _anchor(alert: str) -> str:
    """GitHub's anchor for the heading ``## <alert>`` in docs/alerts.md."""
    return "#" + alert.lower()


def _ratio(selector: str, numerator: str, denominator: str, window: str, offset: str = "") -> str:
    """numerator / denominator, 0 (not absent) when nothing matched the numerator:
    no 5xx is an error ratio of 0, and no hits a hit ratio that collapsed."""
    shift = f" offset {offset}" if offset else ""
    everything = f"sum by ({BY}) (rate({denominator}[{window}]{shift}))"
    return (
        f"(sum by ({BY}) (rate({numerator}[{window}]{shift})) or 0 * {everything})\n/\n{everything}"
    )


def rule_groups(
    namespace: str, name: str, spec: HardenedServiceSpec, proof: str = ""
) -> list[dict[str, Any]]:
    """The PrometheusRule's ``spec.groups`` (also a file for ``promtool``).

    ``proof``: the ``rampart_proof`` label every alert carries (see alertproof).
    """
    alerts = spec.alerts or AlertsSpec()
    sel = f'namespace="{namespace}", hardenedservice="{name}"'
    runbook = DEFAULT_RUNBOOK if alerts.runbook_base_url is None else alerts.runbook_base_url
    # The labels routing and the automatic rollback match on come last: a user's
    # alerts.labels can add to them, never replace them (validation refuses it too).
    static = {**(alerts.labels or {}), "namespace": namespace, "hardenedservice": name}
    if proof:
        static[PROOF_LABEL] = proof
    what = f"{namespace}/{name}"

    def alert(
        name_: str, expr: str, severity: str, duration: str, summary: str, description: str
    ) -> dict[str, Any]:
        rule: dict[str, Any] = {
            "alert": name_,
            "expr": expr,
            "labels": {**static, "severity": severity},
            "annotations": {
                "summary": summary,
                "description": description,
                "runbook_url": runbook + _anchor(name_),
            },
        }
        if duration:
            rule["for"] = duration
        return rule

    error_rate = alerts.error_rate
    latency = alerts.latency_p95
    window = alerts.window
    circuit_for = alerts.circuit_open_for
    errors = f'{REQUESTS}{{{sel}, code=~"5.."}}'
    everything = f"{REQUESTS}{{{sel}}}"
    threshold = [
        alert(
            "RampartHighErrorRate",
            f"(\n{_ratio(sel, errors, everything, window)}\n) > {error_rate}",
            "critical",
            "5m" if alerts.for_ is None else alerts.for_,
            f"{what} answers more than {error_rate:.2%} of requests with 5xx",
            "{{ $value | humanizePercentage }} of requests to " + what + " failed with a "
            f"5xx over the last {window} (threshold {error_rate:.2%}).",
        ),
        alert(
            "RampartHighLatencyP95",
            f"histogram_quantile(0.95, sum by ({BY}, le) (rate({BUCKETS}{{{sel}}}[{window}])))\n"
            f"> {parse_duration(latency)}",
            "warning",
            "10m" if alerts.for_ is None else alerts.for_,
            f"{what} p95 latency is above {latency}",
            "The 95th percentile of request time through the sidecar is "
            "{{ $value | humanizeDuration }} (threshold " + f"{latency}).",
        ),
        alert(
            "RampartCircuitOpen",
            f"min by ({BY}, pod) (min_over_time({CIRCUIT}{{{sel}}}[{circuit_for}])) >= 1",
            "critical",
            "1m",
            f"{what}: a sidecar's circuit breaker has not closed for {circuit_for}",
            "The sidecar in pod {{ $labels.pod }} has refused requests to its "
            f"application for {circuit_for}: the application keeps failing its trials.",
        ),
    ]
    if (spec.sidecar or {}).get("cache") is not None:
        hits = f'{CACHE}{{{sel}, result="hit"}}'
        lookups = f'{CACHE}{{{sel}, result=~"hit|miss|stale"}}'
        threshold.append(
            alert(
                "RampartCacheHitRatioCollapse",
                f"(\n{_ratio(sel, hits, lookups, '10m')}\n)\n< 0.5 * (\n"
                f"{_ratio(sel, hits, lookups, '1h', offset='1h')}\n)\n"
                f"and sum by ({BY}) (rate({lookups}[10m])) > 0.1",
                "warning",
                "10m",
                f"{what} cache hit ratio fell below half of what it was",
                "The response cache now answers {{ $value | humanizePercentage }} of lookups, "
                "under half its hit ratio of the hour before, while requests keep coming.",
            )
        )
    backup = spec.backup
    # The runs' metrics reach Prometheus only through the Pushgateway.
    if backup is not None and backup.pushgateway:
        max_age = alerts.backup_max_age
        threshold += [
            alert(
                "RampartBackupFailed",
                f"max by ({BY}, backup) (rampart_backup_last_run_success{{{sel}}}) == 0",
                "warning",
                "",
                f"{what}: the last backup of {{{{ $labels.backup }}}} failed",
                "The last run of the backup job for {{ $labels.backup }} failed; the one "
                "before it is the newest good backup.",
            ),
            alert(
                "RampartBackupStale",
                f"time() - max by ({BY}, backup) "
                f"(rampart_backup_last_success_timestamp_seconds{{{sel}}})\n"
                f"> {parse_duration(max_age)}",
                "critical",
                "",
                f"{what}: no successful backup of {{{{ $labels.backup }}}} for {max_age}",
                "The newest good backup of {{ $labels.backup }} is "
                "{{ $value | humanizeDuration }} old (limit " + f"{max_age}).",
            ),
        ]
    if backup is not None and backup.pushgateway and backup.drill is not None:
        threshold += _drill_alerts(sel, what, backup.drill, alert)
    groups = [{"name": f"rampart.{namespace}.{name}.alerts", "rules": threshold}]

    slo = alerts.slo
    if slo is not None:
        objective = slo.objective
        budget = round(1 - objective / 100, 10)
        window = slo.window
        window_text = format_duration(parse_duration(window))
        windows = sorted(
            {
                w
                for _, pairs in BURN_WINDOWS.values()
                for pair in pairs
                for w in (pair.long, pair.short)
            },
            key=parse_duration,
        )
        groups.append(
            {
                "name": f"rampart.{namespace}.{name}.slo-recording",
                "rules": [
                    *(
                        {
                            "record": f"rampart:sli_error_ratio:rate{w}",
                            "expr": _ratio(sel, errors, everything, w),
                            "labels": {"slo_objective": str(objective)},
                        }
                        for w in windows
                    ),
                    # For the dashboards: the objective, and the error ratio over the
                    # whole SLO window (the mean of the 5m ratios, as Sloth does),
                    # whatever window and objective each service has.
                    {
                        "record": "rampart:slo_objective:ratio",
                        "expr": f"vector({round(objective / 100, 10)})",
                        "labels": {"namespace": namespace, "hardenedservice": name},
                    },
                    {
                        "record": "rampart:sli_error_ratio:slo_window",
                        "expr": f"avg_over_time(rampart:sli_error_ratio:rate5m{{{sel}}}[{window}])",
                        "labels": {"slo_objective": str(objective)},
                    },
                ],
            }
        )
        burn_alerts = []
        for alert_name, (severity, pairs) in BURN_WINDOWS.items():
            clauses = []
            for pair in pairs:
                factor = burn_factor(pair, window)
                limit = round(factor * budget, 10)
                clauses.append(
                    f"(rampart:sli_error_ratio:rate{pair.long}{{{sel}}} > {limit}\n"
                    f" and rampart:sli_error_ratio:rate{pair.short}{{{sel}}} > {limit})"
                )
            speeds = ", ".join(f"{burn_factor(p, window):g}x over {p.long}" for p in pairs)
            burn_alerts.append(
                alert(
                    alert_name,
                    "\nor\n".join(clauses),
                    severity,
                    "",
                    f"{what} is burning its {objective}% / {window_text} error budget too fast",
                    f"Errors are using up the error budget at {speeds} or more; at this pace "
                    "the SLO will be missed. Error ratio: {{ $value | humanizePercentage }}.",
                )
            )
        groups.append({"name": f"rampart.{namespace}.{name}.slo", "rules": burn_alerts})
    return groups


def seconds_text(value: float) -> str:
    """A number of seconds as PromQL and the agent's flags read it: 93600, not 9.36e+04."""
    return str(int(value)) if value == int(value) else repr(value)


def _drill_alerts(sel: str, what: str, drill: Drill, alert: AlertRule) -> list[dict[str, Any]]:
    """Restore drills' outcome, freshness, and measured RTO and RPO against their targets."""
    by = f"{BY}, backup"
    missing_after = 2 * longest_gap(drill.schedule)
    rules = [
        alert(
            "RampartRestoreDrillFailed",
            f"max by ({by}) (rampart_restore_drill_last_run_success{{{sel}}}) == 0",
            "critical",
            "",
            f"{what}: the last restore drill {{{{ $labels.backup }}}} failed",
            "The newest backup could not be restored and checked: the drill Job's log says "
            "why (verification, restore or a check). Until a drill passes, assume the backups "
            "do not restore.",
        ),
        alert(
            "RampartRestoreDrillMissing",
            f"time() - max by ({by}) "
            f"(rampart_restore_drill_last_success_timestamp_seconds{{{sel}}})\n"
            f"> {seconds_text(missing_after)}",
            "warning",
            "",
            f"{what}: no successful restore drill {{{{ $labels.backup }}}} for "
            + format_duration(missing_after),
            "The last successful drill is {{ $value | humanizeDuration }} old, over twice "
            "its schedule: the drill Job is not running or not finishing.",
        ),
    ]
    if drill.rto:
        rules.append(
            alert(
                "RampartRestoreDrillRTOExceeded",
                f"max by ({by}) (rampart_restore_drill_restore_duration_seconds{{{sel}}})\n"
                f"> {seconds_text(parse_duration(drill.rto))}",
                "warning",
                "",
                f"{what}: restoring {{{{ $labels.backup }}}} takes longer than its RTO "
                f"({drill.rto})",
                "The last drill needed {{ $value | humanizeDuration }} to verify and restore "
                f"the newest backup; the recovery time objective is {drill.rto}.",
            )
        )
    if drill.rpo:
        rules.append(
            alert(
                "RampartRestoreDrillRPOExceeded",
                f"max by ({by}) (rampart_restore_drill_backup_age_seconds{{{sel}}})\n"
                f"> {seconds_text(parse_duration(drill.rpo))}",
                "warning",
                "",
                f"{what}: the newest restorable backup of {{{{ $labels.backup }}}} is older "
                f"than its RPO ({drill.rpo})",
                "The backup the last drill restored was {{ $value | humanizeDuration }} old: a "
                f"loss now would lose more than the recovery point objective, {drill.rpo}.",
            )
        )
    return rules
