"""Restore drills run as the operator renders them, and the alerts on what they push.

A real PostgreSQL is backed up by the backup CronJob's container, then the
drill CronJob's container (its arguments and environment; the volume paths
and its pod-local server are this machine's) restores the newest backup into
a second real PostgreSQL. The drill's metrics reach a real Pushgateway, a real
Prometheus scrapes it and evaluates the PrometheusRule rendered for the same
HardenedService.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from rampart_operator.render import render
from rampart_operator.render.drill import TARGETS
from rampart_operator.settings import OperatorSettings
from tests.backup.cronjob import run_job_container
from tests.conftest import PostgresServer, wait_until
from tests.monitoring import Prometheus, Pushgateway

pytestmark = pytest.mark.integration


def service(name: str, pushgateway: str, drill: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}"},
        "spec": {
            "image": "ghcr.io/acme/orders:1",
            "alerts": {},
            "backup": {
                "schedule": "0 2 * * *",
                "pushgateway": pushgateway,
                "sources": [
                    {"name": "db", "postgres": {"urlSecretRef": {"name": "db", "key": "url"}}}
                ],
                "destination": {"pvc": "backups"},
                "encryption": {"keySecretRef": {"name": "backup-key", "key": "key"}},
                "drill": {"schedule": "30 4 * * *", **drill},
            },
        },
    }


def cron_job(resource: dict[str, Any], name: str) -> dict[str, Any]:
    rendered = render(resource, OperatorSettings())
    return next(m for m in rendered if m["kind"] == "CronJob" and m["metadata"]["name"] == name)


def firing(prometheus: Prometheus, alert: str, name: str) -> list[dict[str, Any]]:
    return [
        a
        for a in prometheus.alerts()
        if a["labels"]["alertname"] == alert and a["labels"]["hardenedservice"] == name
    ]


def test_drills_restore_measure_and_alert(postgres: PostgresServer, tmp_path: Path) -> None:
    database = f"orders_{uuid.uuid4().hex[:8]}"
    postgres.sql(f"CREATE DATABASE {database}")
    postgres.sql(
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric);"
        "INSERT INTO orders SELECT i, i * 1.5 FROM generate_series(1, 250) i",
        database,
    )
    production = postgres.url.rsplit("/", 1)[0] + f"/{database}"
    before = postgres.sql("SELECT count(*), sum(total) FROM orders", database)
    pushgateway = Pushgateway(tmp_path)
    target = PostgresServer()  # what the drill pod's own server stands for
    # Two services: one whose targets a drill meets, one whose RTO no restore can meet.
    relaxed = service("orders", pushgateway.url, {"rto": "15m", "rpo": "26h"})
    strict = service("ledger", pushgateway.url, {"rto": "1ms", "rpo": "26h"})
    rules = [
        group
        for resource in (relaxed, strict)
        for m in render(resource, OperatorSettings())
        if m["kind"] == "PrometheusRule"
        for group in m["spec"]["groups"]
    ]
    prometheus = Prometheus(
        tmp_path, {f"127.0.0.1:{pushgateway.port}": {}}, rules=rules, honor_labels=True
    )
    try:
        for resource in (relaxed, strict):
            name = resource["metadata"]["name"]
            work = tmp_path / name
            backed_up = run_job_container(
                cron_job(resource, f"{name}-backup-db"), {("db", "url"): production}, work
            )
            assert backed_up.returncode == 0, backed_up.stderr
            drilled = run_job_container(
                cron_job(resource, f"{name}-drill-db"),
                {},
                work,
                local={TARGETS["postgres"]: target.url},
            )
            assert drilled.returncode == 0, drilled.stderr
            report = json.loads(drilled.stdout.strip().splitlines()[-1])
            assert report["inventory"]["tables"] == 1
            assert report["inventory"]["rows"] == 250
            assert 0 < report["restoreSeconds"] < 60
            assert 0 <= report["backupAgeSeconds"] < 60
        # The copy is the backup's; production was never touched.
        assert target.sql("SELECT count(*), sum(total) FROM orders") == before
        assert postgres.sql("SELECT count(*), sum(total) FROM orders", database) == before

        # The strict service's restore took longer than 1ms: its RTO alert fires,
        # with the labels routing relies on; the relaxed one stays silent.
        wait_until(lambda: bool(firing(prometheus, "RampartRestoreDrillRTOExceeded", "ledger")), 30)
        (alert,) = firing(prometheus, "RampartRestoreDrillRTOExceeded", "ledger")
        assert alert["labels"]["namespace"] == "shop"
        assert alert["labels"]["backup"] == "ledger-drill-db"
        assert alert["labels"]["severity"] == "warning"
        assert not [a for a in prometheus.alerts() if a["labels"]["hardenedservice"] == "orders"]

        # A backup changed on the volume: the next drill fails with its reason, and pages.
        (newest,) = sorted((tmp_path / "orders" / "backups").glob("*/*/*/data.rbk"))[-1:]
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0xFF
        newest.write_bytes(bytes(data))
        failed = run_job_container(
            cron_job(relaxed, "orders-drill-db"),
            {},
            tmp_path / "orders",
            local={TARGETS["postgres"]: target.url},
        )
        assert failed.returncode == 5, failed.stderr  # Tampered
        assert "Tampered" in failed.stderr
        wait_until(lambda: bool(firing(prometheus, "RampartRestoreDrillFailed", "orders")), 30)
        (alert,) = firing(prometheus, "RampartRestoreDrillFailed", "orders")
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["backup"] == "orders-drill-db"
    finally:
        prometheus.stop()
        pushgateway.stop()
        target.stop()
