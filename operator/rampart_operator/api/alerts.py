"""``spec.alerts`` and ``spec.monitoring``: what Prometheus scrapes and alerts on."""

from __future__ import annotations

from pydantic import Field

from .fields import ApiModel, DurationText, Labels

__all__ = ["AlertsSpec", "MonitoringSpec", "Slo", "Switch"]


class Slo(ApiModel):
    objective: float = Field(ge=50, le=99.999)
    """Percent of requests answered without 5xx."""
    window: DurationText = "30d"
    """The SLO's period; the burn-rate alerts are fractions of it."""


class AlertsSpec(ApiModel):
    """A PrometheusRule with threshold and SLO alerts (docs/alerts.md); absent means none."""

    enabled: bool = True
    """false: no PrometheusRule."""
    error_rate: float = Field(0.05, gt=0, le=1)
    """Share of 5xx answers over alerts.window that alerts."""
    latency_p95: DurationText = "800ms"
    """The 95th percentile of request time over alerts.window that alerts."""
    window: DurationText = "5m"
    """Range of the error-rate and latency alerts' rates."""
    for_: DurationText | None = Field(None, alias="for")
    """How long the error rate or p95 must stay over its threshold before its alert
    fires. Default: 5m for the error rate, 10m for the p95."""
    circuit_open_for: DurationText = "3m"
    """How long a breaker may stay open unalerted."""
    slo: Slo | None = None
    """Multi-window burn-rate alerts on an availability objective (Google's SRE
    workbook, as Sloth renders them)."""
    labels: Labels | None = None
    """Copied onto the PrometheusRule (for Prometheus' ruleSelector) and onto every
    alert (for routing)."""
    runbook_base_url: str | None = Field(None, alias="runbookBaseURL")
    """Where each alert's runbook_url points. Default: docs/alerts.md in the
    project's repository."""
    backup_max_age: DurationText = "26h"
    """Age of the newest good backup that alerts (needs spec.backup.pushgateway)."""


class Switch(ApiModel):
    """A PodMonitor selecting the pods' admin port."""

    enabled: bool = True


class ServiceMonitorSwitch(ApiModel):
    """A ServiceMonitor, and the headless Service it selects, instead of or beside
    the PodMonitor."""

    enabled: bool = False


class MonitoringSpec(ApiModel):
    """Scraping of the sidecars' admin port; with spec.alerts set and this absent, a
    PodMonitor is rendered."""

    pod_monitor: Switch | None = None
    service_monitor: ServiceMonitorSwitch | None = None
    interval: DurationText = "30s"
    """Scrape interval."""
    labels: Labels | None = None
    """Copied onto the PodMonitor/ServiceMonitor (for Prometheus' podMonitorSelector)."""
