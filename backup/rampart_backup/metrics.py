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

A restore drill (``rampart-backup drill``) reports the same two ways, under
the Pushgateway job ``rampart-restore-drill`` so that it never shares a group
with the backup runs (same grouping key otherwise). Its series, labelled like
the runs' (``backup``, ``kind`` and the ``--label`` labels), are
``rampart_restore_drill_last_run_success`` (always),
``rampart_restore_drill_last_success_timestamp_seconds`` (on success),
``rampart_restore_drill_restore_duration_seconds`` (verify and restore: the
measured RTO) and ``rampart_restore_drill_restored_bytes`` (when the restore
completed), ``rampart_restore_drill_backup_age_seconds`` (the measured RPO,
when there was a backup), and ``rampart_restore_drill_rto_target_seconds`` /
``rampart_restore_drill_rpo_target_seconds`` (when given). As with the runs, a
failed drill replaces only what it measured: the last success's timestamp stays.
Give a drill its own ``--metrics-file``: a textfile holds one writer's series.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway, write_to_textfile

__all__ = ["DRILL_SERIES", "OWN_LABELS", "check_labels", "record", "record_drill"]

OWN_LABELS = frozenset({"backup", "kind", "job", "instance"})
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DRILL_JOB = "rampart-restore-drill"
DRILL_SERIES = {  # the name after rampart_restore_drill_ → its help text
    "last_run_success": "1 when the last restore drill succeeded.",
    "last_success_timestamp_seconds": "When the last successful restore drill finished.",
    "restore_duration_seconds": "Verify and restore time of the last drill: the measured RTO.",
    "backup_age_seconds": "Age of the backup the last drill restored: the measured RPO.",
    "restored_bytes": "Plaintext bytes the last drill restored.",
    "rto_target_seconds": "The recovery time objective the drill was given.",
    "rpo_target_seconds": "The recovery point objective the drill was given.",
}


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
    _publish(registry, "rampart-backup", job, extra, metrics_file, pushgateway)


def record_drill(
    job: str,
    kind: str,
    values: Mapping[str, float],
    metrics_file: Path | None,
    pushgateway: str | None,
    extra: dict[str, str] | None = None,
) -> None:
    """Publish a drill's ``values``, keyed by DRILL_SERIES names; those absent are
    left as they were at the Pushgateway."""
    if metrics_file is None and pushgateway is None:
        return
    registry = CollectorRegistry()
    labels = {"backup": job, "kind": kind, **(extra or {})}
    for name, value in values.items():
        gauge = Gauge(
            f"rampart_restore_drill_{name}", DRILL_SERIES[name], list(labels), registry=registry
        )
        gauge.labels(**labels).set(value)
    _publish(registry, DRILL_JOB, job, extra, metrics_file, pushgateway)


def _publish(
    registry: CollectorRegistry,
    push_job: str,
    backup: str,
    extra: dict[str, str] | None,
    metrics_file: Path | None,
    pushgateway: str | None,
) -> None:
    if metrics_file is not None:
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(metrics_file), registry)
    if pushgateway is not None:
        pushadd_to_gateway(
            pushgateway,
            job=push_job,
            grouping_key={"backup": backup, **(extra or {})},
            registry=registry,
        )
