"""Every metric the operator exports, owned by one ``OperatorMetrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

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

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)
