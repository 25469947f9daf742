"""The Grafana dashboards Rampart ships, built with grafana-foundation-sdk.

    .venv/bin/python dashboards/generate.py          write dashboards/*.json and the chart's copies
    .venv/bin/python dashboards/generate.py --check  exit 1 if a committed file differs

Three dashboards, each with a Prometheus data source variable and the
``namespace`` and ``hardenedservice`` variables:

- **Rampart / Service**: what one HardenedService's sidecars see, per route and
  per track (stable, canary): traffic, errors, latency, the breaker, retries,
  timeouts, rejections, the cache and Redis, and the SLO when ``alerts.slo`` is set;
- **Rampart / Rollouts**: every canary's phase and weight, its analysis values
  against their thresholds, promotions and rollbacks with their cause, and
  alert firings as annotations;
- **Rampart / Operator and backups**: reconciliations, the operator's queue,
  admission reviews, the webhook certificate, and every backup's last run.

Every query selects on series our programs emit, labelled the way the rendered
PodMonitor, the chart's ServiceMonitor and the Pushgateway give them; the tests
run each one against a real Prometheus scraping the real programs
(e2e/test_dashboards.py). docs/dashboards.md describes each panel.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    dashboard,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders.common import (
    GraphThresholdsStyleConfig,
    ReduceDataOptions,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    GraphTresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
)

ROOT = Path(__file__).resolve().parent
OUTPUTS = (ROOT, ROOT.parent / "charts" / "rampart" / "dashboards")
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
SIDECAR = 'namespace=~"$namespace", hardenedservice=~"$hardenedservice"'
OPERATOR = 'namespace=~"$namespace", name=~"$hardenedservice"'  # the operator's own labels
REQUESTS = "rampart_http_request_duration_seconds"
SLO_RATIO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")  # render/alerts.py records these


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> Any:
    target = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    if instant:
        target = target.instant().format("table")
    return target


def legend() -> Any:
    return (
        VizLegendOptions()
        .display_mode(LegendDisplayMode.LIST)
        .placement(LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def tooltip() -> Any:
    return VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)


def thresholds(*steps: tuple[float | None, str]) -> Any:
    config = dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE)
    return config.steps([Threshold(value=value, color=color) for value, color in steps])


def series(
    title: str,
    description: str,
    unit: str,
    targets: Iterable[Any],
    *,
    lines: tuple[tuple[float | None, str], ...] = (),
    width: int = 12,
) -> Any:
    """A time series panel; ``lines`` are thresholds drawn as dashed lines."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(width)
        .fill_opacity(10)
        .legend(legend())
        .tooltip(tooltip())
    )
    for target in targets:
        panel = panel.with_target(target)
    if lines:
        panel = panel.thresholds(thresholds((None, "transparent"), *lines)).thresholds_style(
            GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.DASHED)
        )
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    target: Any,
    steps: tuple[tuple[float | None, str], ...],
    width: int = 6,
) -> Any:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(6)
        .span(width)
        .with_target(target)
        .thresholds(thresholds(*steps))
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]))
    )


def listing(title: str, description: str, unit: str, targets: Iterable[Any], width: int) -> Any:
    panel = (
        table.Panel()
        .show_header(True)
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .height(8)
        .span(width)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def variables(board: Any, source: str, name_label: str) -> Any:
    """Data source, then namespace and HardenedService, each narrowing the next."""
    board = board.with_variable(
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
    )
    namespace = (
        dashboard.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query(f"label_values({source}, namespace)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    service = (
        dashboard.QueryVariable("hardenedservice")
        .label("HardenedService")
        .datasource(DATASOURCE)
        .query(f'label_values({source}{{namespace=~"$namespace"}}, {name_label})')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    return board.with_variable(namespace).with_variable(service)


def base(uid: str, title: str, description: str) -> Any:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["rampart"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
    )


def service_dashboard() -> Any:
    rate = f"rate({REQUESTS}_count{{{SIDECAR}}}[{RATE}])"
    errors = f'rate({REQUESTS}_count{{{SIDECAR}, code=~"5.."}}[{RATE}])'
    board = variables(
        base(
            "rampart-service",
            "Rampart / Service",
            "One HardenedService as its sidecars see it: traffic, errors, latency, "
            "resilience policies, the cache and the SLO.",
        ),
        f"{REQUESTS}_count",
        "hardenedservice",
    )
    board = board.with_row(dashboard.Row("Traffic"))
    board = board.with_panel(
        series(
            "Request rate",
            "Requests answered by the sidecars, per route and track (stable or canary).",
            "reqps",
            [query(f"sum by (route, track) ({rate})", "{{route}} {{track}}")],
        )
    )
    board = board.with_panel(
        series(
            "Error ratio",
            "Share of requests answered 5xx, per track. RampartHighErrorRate fires above "
            "alerts.errorRate (5% unless set), drawn in red.",
            "percentunit",
            [query(f"sum by (track) ({errors}) / sum by (track) ({rate})", "{{track}}")],
            lines=((0.05, "red"),),
        )
    )
    latency = [
        query(
            f"histogram_quantile({q}, sum by (le, track) "
            f"(rate({REQUESTS}_bucket{{{SIDECAR}}}[{RATE}])))",
            f"p{round(q * 100)} {{{{track}}}}",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]
    board = board.with_panel(
        series(
            "Latency",
            "p50, p95 and p99 of the time from request received to response headers sent, "
            "per track. RampartHighLatencyP95 fires above alerts.latencyP95 (800ms unless set).",
            "s",
            latency,
            lines=((0.8, "red"),),
        )
    )
    board = board.with_panel(
        series(
            "Latency p95 by route",
            "The 95th percentile per route: which part of the service is slow.",
            "s",
            [
                query(
                    "histogram_quantile(0.95, sum by (le, route) "
                    f"(rate({REQUESTS}_bucket{{{SIDECAR}}}[{RATE}])))",
                    "{{route}}",
                )
            ],
        )
    )
    board = board.with_row(dashboard.Row("Resilience"))
    board = board.with_panel(
        statetimeline.Panel()
        .title("Circuit breaker")
        .description(
            "Each sidecar's breaker: closed, half-open (trial requests) or open (the "
            "application is refused requests). RampartCircuitOpen fires when one stays open."
        )
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .legend(legend())
        .tooltip(tooltip())
        .with_target(query(f"max by (pod) (rampart_circuit_state{{{SIDECAR}}})", "{{pod}}"))
        .mappings(
            [
                ValueMap(
                    options={
                        "0": ValueMappingResult(text="closed", color="green", index=0),
                        "1": ValueMappingResult(text="half-open", color="orange", index=1),
                        "2": ValueMappingResult(text="open", color="red", index=2),
                    }
                )
            ]
        )
        .thresholds(thresholds((None, "green"), (1, "orange"), (2, "red")))
    )
    board = board.with_panel(
        series(
            "Upstream attempts by status",
            "Calls from the sidecars to the application, retries included, by status code "
            "(0: no response: refused, reset or timed out).",
            "reqps",
            [
                query(
                    "sum by (code) (rate(rampart_upstream_request_duration_seconds_count"
                    f"{{{SIDECAR}}}[{RATE}]))",
                    "{{code}}",
                )
            ],
        )
    )
    board = board.with_panel(
        series(
            "Retries and timeouts",
            "Attempts made after the first, and requests answered 504 because their "
            "route's timeout ran out.",
            "reqps",
            [
                query(f"sum(rate(rampart_retries_total{{{SIDECAR}}}[{RATE}]))", "retries"),
                query(f"sum(rate(rampart_timeouts_total{{{SIDECAR}}}[{RATE}]))", "timeouts", "B"),
            ],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Rejections by reason",
            "Requests the sidecar answered itself: circuit open, concurrency or rate limit, "
            "client errors, upstream failures.",
            "reqps",
            [
                query(
                    f"sum by (reason) (rate(rampart_rejected_total{{{SIDECAR}}}[{RATE}]))",
                    "{{reason}}",
                )
            ],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "In flight",
            "Requests being handled, per pod (concurrency.maxInFlight is the limit).",
            "short",
            [query(f"sum by (pod) (rampart_inflight_requests{{{SIDECAR}}})", "{{pod}}")],
            width=8,
        )
    )
    board = board.with_row(dashboard.Row("Cache"))
    lookups = f'rampart_cache_requests_total{{{SIDECAR}, result=~"hit|miss|stale"}}'
    board = board.with_panel(
        series(
            "Cache hit ratio",
            "Hits among lookups (hit, miss, stale). RampartCacheHitRatioCollapse fires when "
            "it falls under half of the hour before.",
            "percentunit",
            [
                query(
                    f'sum(rate(rampart_cache_requests_total{{{SIDECAR}, result="hit"}}[{RATE}]))'
                    f" / sum(rate({lookups}[{RATE}]))",
                    "hit ratio",
                )
            ],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Cache requests by result",
            "What the cache did for each request: hit, miss, revalidated, stale, bypass.",
            "reqps",
            [
                query(
                    f"sum by (result) (rate(rampart_cache_requests_total{{{SIDECAR}}}[{RATE}]))",
                    "{{result}}",
                )
            ],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Redis",
            "1 while each sidecar's Redis answers (0: served from memory), and failed "
            "backend operations per second.",
            "short",
            [
                query(
                    f'min by (pod) (rampart_cache_backend_up{{{SIDECAR}, backend="redis"}})',
                    "up {{pod}}",
                ),
                query(
                    "sum by (backend) (rate(rampart_cache_backend_errors_total"
                    f"{{{SIDECAR}}}[{RATE}]))",
                    "errors/s {{backend}}",
                    "B",
                ),
            ],
            width=8,
        )
    )
    board = board.with_row(dashboard.Row("SLO (alerts.slo)"))
    budget = f"(1 - rampart:slo_objective:ratio{{{SIDECAR}}})"
    board = board.with_panel(
        single(
            "Error budget remaining",
            "Share of the SLO window's error budget not yet spent: 1 - (error ratio over "
            "the window / (1 - objective)). Below zero the SLO is missed.",
            "percentunit",
            query(
                "1 - max by (namespace, hardenedservice) (rampart:sli_error_ratio:slo_window"
                f"{{{SIDECAR}}}) / on (namespace, hardenedservice) {budget}",
                "{{namespace}}/{{hardenedservice}}",
            ),
            ((None, "red"), (0, "orange"), (0.25, "green")),
            width=6,
        )
    )
    burn = [
        query(
            f"max by (namespace, hardenedservice) (rampart:sli_error_ratio:rate{window}"
            f"{{{SIDECAR}}}) / on (namespace, hardenedservice) {budget}",
            window,
            chr(ord("A") + index),
        )
        for index, window in enumerate(SLO_RATIO_WINDOWS)
    ]
    board = board.with_panel(
        series(
            "Burn rate",
            "How many times faster than exactly on budget errors spend it, per window. For a "
            "30d SLO RampartSLOBurnRateFast fires at 14.4x (1h and 5m) or 6x (6h and 30m), "
            "RampartSLOBurnRateSlow at 3x (1d and 2h) or 1x (3d and 6h).",
            "x",
            burn,
            lines=((1, "orange"), (14.4, "red")),
            width=18,
        )
    )
    return board


def rollouts_dashboard() -> Any:
    board = variables(
        base(
            "rampart-rollouts",
            "Rampart / Rollouts",
            "Every canary: its phase and weight, its analysis against the thresholds, "
            "promotions and rollbacks with their cause; alert firings are annotations.",
        ),
        "rampart_operator_canary_phase",
        "name",
    )
    board = board.annotation(
        dashboard.AnnotationQuery()
        .name("Alerts firing")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        .expr(
            'ALERTS{alertstate="firing", namespace=~"$namespace", '
            'hardenedservice=~"$hardenedservice"}'
        )
    )
    board = board.with_panel(
        listing(
            "Phase",
            "The phase each HardenedService's rollout is in now: Initialized, Progressing, "
            "Promoting, Succeeded or RolledBack.",
            "short",
            [query(f"rampart_operator_canary_phase{{{OPERATOR}}} == 1", instant=True)],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Canary weight",
            "Percent of traffic routed to the canary; 0 after a promotion or a rollback.",
            "percent",
            [
                query(
                    f"max by (namespace, name) (rampart_operator_canary_weight{{{OPERATOR}}})",
                    "{{namespace}}/{{name}}",
                )
            ],
            width=16,
        )
    )
    board = board.with_panel(
        series(
            "Analysis against thresholds",
            "The last value of each analysis check (solid) and the limit it is held to "
            "(dashed): a value above its limit is a failed check.",
            "short",
            [
                query(
                    "max by (namespace, name, check) "
                    f"(rampart_operator_canary_analysis_value{{{OPERATOR}}})",
                    "{{namespace}}/{{name}} {{check}}",
                ),
                query(
                    "max by (namespace, name, check) "
                    f"(rampart_operator_canary_analysis_threshold{{{OPERATOR}}})",
                    "{{namespace}}/{{name}} {{check}} threshold",
                    "B",
                ),
            ],
            width=24,
        ).override_by_regexp(
            ".* threshold$",
            [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
        )
    )
    board = board.with_panel(
        listing(
            "Rollbacks and their cause",
            "Rollbacks in the time range, by cause: alert, analysis, abort (the "
            "rampart.dev/abort annotation) or progressDeadline.",
            "short",
            [
                query(
                    "sum by (namespace, name, cause) (increase(rampart_operator_rollouts_total"
                    f'{{{OPERATOR}, result="RolledBack"}}[$__range])) > 0',
                    instant=True,
                )
            ],
            width=12,
        )
    )
    board = board.with_panel(
        listing(
            "Promotions",
            "Canaries promoted in the time range.",
            "short",
            [
                query(
                    "sum by (namespace, name) (increase(rampart_operator_rollouts_total"
                    f'{{{OPERATOR}, result="Promoted"}}[$__range])) > 0',
                    instant=True,
                )
            ],
            width=12,
        )
    )
    board = board.with_panel(
        series(
            "Alert to rollback",
            "p99 of the time from an alert reaching the operator to the canary's weight 0 "
            "written to the API server (all services).",
            "s",
            [
                query(
                    "histogram_quantile(0.99, sum by (le) "
                    f"(rate(rampart_operator_alert_to_rollback_seconds_bucket[{RATE}])))",
                    "p99",
                )
            ],
            lines=((1, "red"),),
        )
    )
    board = board.with_panel(
        series(
            "Alert notifications",
            "HardenedServices with newly firing alerts, from the webhook or polling.",
            "short",
            [
                query(
                    f"sum(increase(rampart_operator_alert_notifications_total[{RATE}]))",
                    "notifications",
                )
            ],
        )
    )
    return board


def operator_dashboard() -> Any:
    board = variables(
        base(
            "rampart-operator",
            "Rampart / Operator and backups",
            "The operator's reconciliations, queue and admission webhooks, and every "
            "HardenedService's backups.",
        ),
        "rampart_backup_last_run_success",
        "hardenedservice",
    )
    board = board.with_row(dashboard.Row("Operator"))
    board = board.with_panel(
        series(
            "Reconciliations by result",
            "applied, stalled (an invalid spec or a missing Secret: see the resource's "
            "Stalled condition) and error (the API server failed; retried).",
            "ops",
            [
                query(
                    f"sum by (result) (rate(rampart_operator_reconciliations_total[{RATE}]))",
                    "{{result}}",
                )
            ],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Reconcile latency",
            "p50 and p99 of one reconciliation, API calls included.",
            "s",
            [
                query(
                    f"histogram_quantile({q}, sum by (le) "
                    f"(rate(rampart_operator_reconcile_duration_seconds_bucket[{RATE}])))",
                    f"p{round(q * 100)}",
                    ref,
                )
                for q, ref in ((0.5, "A"), (0.99, "B"))
            ],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Queue",
            "Reconciliations running or waiting for their HardenedService's lock.",
            "short",
            [query("sum(rampart_operator_reconciles_in_progress)", "in progress")],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Children changed",
            "Children created, updated (drift restored included) or deleted, by kind.",
            "ops",
            [
                query(
                    f"sum by (verb, kind) (rate(rampart_operator_child_changes_total[{RATE}]))",
                    "{{verb}} {{kind}}",
                )
            ],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Admission reviews",
            "Reviews answered by webhook and result (allowed, denied, injected, skipped, "
            "malformed).",
            "ops",
            [
                query(
                    "sum by (webhook, result) "
                    f"(rate(rampart_operator_admission_reviews_total[{RATE}]))",
                    "{{webhook}} {{result}}",
                )
            ],
            width=8,
        )
    )
    board = board.with_panel(
        single(
            "Webhook certificate expires in",
            "Time left on the certificate the webhook server presents; the operator renews "
            "it, so a value under 7 days means renewal is failing.",
            "s",
            query(
                "min(rampart_operator_webhook_certificate_expiry_timestamp_seconds) - time()",
                "expires in",
            ),
            ((None, "red"), (7 * 86400, "orange"), (30 * 86400, "green")),
            width=8,
        )
    )
    backups = 'namespace=~"$namespace", hardenedservice=~"$hardenedservice"'
    by = "namespace, hardenedservice, backup"
    board = board.with_row(dashboard.Row("Backups"))
    board = board.with_panel(
        listing(
            "Last run",
            "1 if each backup's last run succeeded. RampartBackupFailed fires on 0.",
            "short",
            [
                query(
                    f"max by ({by}) (rampart_backup_last_run_success{{{backups}}})",
                    instant=True,
                )
            ],
            width=12,
        )
    )
    board = board.with_panel(
        series(
            "Age of the newest good backup",
            "Time since each backup last succeeded. RampartBackupStale fires above "
            "alerts.backupMaxAge (26h unless set), drawn in red.",
            "s",
            [
                query(
                    f"time() - max by ({by}) "
                    f"(rampart_backup_last_success_timestamp_seconds{{{backups}}})",
                    "{{namespace}}/{{hardenedservice}} {{backup}}",
                )
            ],
            lines=((26 * 3600, "red"),),
        )
    )
    board = board.with_panel(
        series(
            "Backup size",
            "Encrypted size of each backup's last successful run.",
            "bytes",
            [
                query(
                    f"max by ({by}) (rampart_backup_last_size_bytes{{{backups}}})",
                    "{{namespace}}/{{hardenedservice}} {{backup}}",
                )
            ],
        )
    )
    board = board.with_panel(
        series(
            "Backup duration",
            "How long each backup's last run took.",
            "s",
            [
                query(
                    f"max by ({by}) (rampart_backup_last_duration_seconds{{{backups}}})",
                    "{{namespace}}/{{hardenedservice}} {{backup}}",
                )
            ],
        )
    )
    board = board.with_row(dashboard.Row("Restore drills"))
    board = board.with_panel(
        listing(
            "Last drill",
            "1 if each source's last restore drill restored and checked the newest backup. "
            "RampartRestoreDrillFailed fires on 0.",
            "short",
            [
                query(
                    f"max by ({by}) (rampart_restore_drill_last_run_success{{{backups}}})",
                    instant=True,
                )
            ],
            width=8,
        )
    )
    board = board.with_panel(
        series(
            "Restore time against RTO",
            "How long the last drill took to verify and restore the newest backup (the "
            "measured RTO, solid) and spec.backup.drill.rto (dashed): "
            "RampartRestoreDrillRTOExceeded fires above it.",
            "s",
            [
                query(
                    f"max by ({by}) (rampart_restore_drill_restore_duration_seconds{{{backups}}})",
                    "{{hardenedservice}} {{backup}}",
                ),
                query(
                    f"max by ({by}) (rampart_restore_drill_rto_target_seconds{{{backups}}})",
                    "{{hardenedservice}} {{backup}} RTO",
                    "B",
                ),
            ],
            width=8,
        ).override_by_regexp(
            ".* RTO$",
            [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
        )
    )
    board = board.with_panel(
        series(
            "Backup age at drill against RPO",
            "How old the backup the last drill restored was (the measured RPO, solid) and "
            "spec.backup.drill.rpo (dashed): RampartRestoreDrillRPOExceeded fires above it.",
            "s",
            [
                query(
                    f"max by ({by}) (rampart_restore_drill_backup_age_seconds{{{backups}}})",
                    "{{hardenedservice}} {{backup}}",
                ),
                query(
                    f"max by ({by}) (rampart_restore_drill_rpo_target_seconds{{{backups}}})",
                    "{{hardenedservice}} {{backup}} RPO",
                    "B",
                ),
            ],
            width=8,
        ).override_by_regexp(
            ".* RPO$",
            [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}],
        )
    )
    return board


BOARDS = {
    "rampart-service.json": service_dashboard,
    "rampart-rollouts.json": rollouts_dashboard,
    "rampart-operator.json": operator_dashboard,
}


def render(build: Any) -> str:
    built = build().build()
    return json.dumps(built, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    stale = []
    for filename, build in BOARDS.items():
        text = render(build)
        for folder in OUTPUTS:
            path = folder / filename
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    for path in stale:
        print(f"{path}: stale; run .venv/bin/python dashboards/generate.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
