"""The outcome of a run, where an alert can see it.

``--metrics-file`` writes the Prometheus text format for node-exporter's
textfile collector; ``--pushgateway`` pushes the same to a Pushgateway. Either
way the series are ``rampart_backup_last_run_success``,
``rampart_backup_last_success_timestamp_seconds``,
``rampart_backup_last_duration_seconds`` and ``rampart_backup_last_size_bytes``,
labelled ``backup`` (the run's name), ``kind`` (of source) and whatever
``--label`` adds (the operator adds ``namespace`` and ``hardenedservice``,
which its alert rules select on).

At the Pushgateway the run's group is keyed by ``backup`` and the ``--label``
labels, so two namespaces' backups of the same name never overwrite each
other, and a run replaces only the series it sets (POST, not PUT): a failed
run leaves the last success's timestamp and size in place, which is what
``RampartBackupStale`` measures from. Prometheus must scrape the Pushgateway
with ``honor_labels: true`` (``honorLabels`` in a ServiceMonitor), or the
scrape's own ``namespace`` and ``job`` replace the pushed ones.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway, write_to_textfile

__all__ = ["OWN_LABELS", "check_labels", "record"]

OWN_LABELS = frozenset({"backup", "kind", "job", "instance"})
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_labels(labels: dict[str, str]) -> str | None:
    """Why these extra labels cannot be used, or None."""
    for name in labels:
        if not LABEL_NAME.match(name) or name.startswith("__"):
            return f"--label {name}: not a Prometheus label name"
        if name in OWN_LABELS:
            return f"--label {name}: the agent sets {name} itself"
    return None


def record(
    job: str,
    kind: str,
    success: bool,
    duration: float,
    size: int,
    metrics_file: Path | None,
    pushgateway: str | None,
    extra: dict[str, str] | None = None,
) -> None:
    if metrics_file is None and pushgateway is None:
        return
    registry = CollectorRegistry()
    labels = {"backup": job, "kind": kind, **(extra or {})}

    def gauge(name: str, text: str, value: float) -> None:
        Gauge(name, text, list(labels), registry=registry).labels(**labels).set(value)

    gauge("rampart_backup_last_run_success", "1 when the last run succeeded.", float(success))
    gauge("rampart_backup_last_duration_seconds", "Duration of the last run.", duration)
    if success:
        gauge(
            "rampart_backup_last_success_timestamp_seconds",
            "When the last successful run finished.",
            time.time(),
        )
        gauge("rampart_backup_last_size_bytes", "Encrypted size of the last backup.", size)
    if metrics_file is not None:
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(metrics_file), registry)
    if pushgateway is not None:
        pushadd_to_gateway(
            pushgateway,
            job="rampart-backup",
            grouping_key={"backup": job, **(extra or {})},
            registry=registry,
        )
