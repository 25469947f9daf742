"""Every metric the operator exports, owned by one ``OperatorMetrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["OperatorMetrics"]


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciliations = Counter(
            "rampart_operator_reconciliations_total",
            "Reconciliations by result: applied, stalled (invalid spec), error (will retry).",
            ["result"],
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "rampart_operator_reconciles_in_progress",
            "Reconciliations running or waiting for their HardenedService's lock.",
            registry=self.registry,
        )
        self.duration = Histogram(
            "rampart_operator_reconcile_duration_seconds",
            "Time of one reconciliation, API calls included.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.changes = Counter(
            "rampart_operator_child_changes_total",
            "Children created, updated (including drift restored) or deleted.",
            ["verb", "kind"],
            registry=self.registry,
        )

        self.alerts = Counter(
            "rampart_operator_alert_notifications_total",
            "HardenedServices with newly firing alerts, from the webhook or polling.",
            registry=self.registry,
        )
        self.weight = Gauge(
            "rampart_operator_canary_weight",
            "Percent of traffic routed to the canary.",
            ["namespace", "name"],
            registry=self.registry,
        )
        self.analysis = Gauge(
            "rampart_operator_canary_analysis_value",
            "The last value of each analysis check.",
            ["namespace", "name", "check"],
            registry=self.registry,
        )
        self.phase = Gauge(
            "rampart_operator_canary_phase",
            "1 for the phase each HardenedService's rollout is in, 0 for the others.",
            ["namespace", "name", "phase"],
            registry=self.registry,
        )
        self.threshold = Gauge(
            "rampart_operator_canary_analysis_threshold",
            "The limit each analysis check is held to (a value above it fails).",
            ["namespace", "name", "check"],
            registry=self.registry,
        )
        self.rollouts = Counter(
            "rampart_operator_rollouts_total",
            "Rollouts ended, by result (Promoted or RolledBack) and, for a rollback, "
            "its cause (alert, analysis, abort, progressDeadline).",
            ["namespace", "name", "result", "cause"],
            registry=self.registry,
        )
        self.alert_to_rollback = Histogram(
            "rampart_operator_alert_to_rollback_seconds",
            "From an alert reaching the operator to the canary's weight 0 written to the API.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )

        self.admission = Counter(
            "rampart_operator_admission_reviews_total",
            "Admission reviews answered, by webhook and result "
            "(allowed, denied, injected, skipped, malformed).",
            ["webhook", "result"],
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "rampart_operator_webhook_certificate_expiry_timestamp_seconds",
            "When the certificate the webhook server presents expires (Unix time).",
            registry=self.registry,
        )

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
