"""The outcome of a run, where an alert can see it.

``--metrics-file`` writes the Prometheus text format for node-exporter's
textfile collector; ``--pushgateway`` pushes the same to a Pushgateway. Either
way the series are ``rampart_backup_last_run_success``,
``rampart_backup_last_success_timestamp_seconds``,
``rampart_backup_last_duration_seconds`` and ``rampart_backup_last_size_bytes``,
labelled ``backup`` (the run's name), ``kind`` (of source) and whatever
``--label`` adds (the operator adds ``namespace`` and ``hardenedservice``).
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

__all__ = ["record"]


def record(
    job: str,
    kind: str,
    success: bool,
    duration: float,
    size: int,
    metrics_file: Path | None,
    pushgateway: str | None,
) -> None:
    if metrics_file is None and pushgateway is None:
        return
    registry = CollectorRegistry()
    labels = {"job_name": job, "source": kind}

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
        push_to_gateway(pushgateway, job=f"rampart-backup-{job}", registry=registry)
