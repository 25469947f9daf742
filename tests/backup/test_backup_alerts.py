"""The backup alerts fire from what the agent really pushes.

The CronJob the operator renders is run as its container would run it (its
arguments and environment; only the volume paths are this machine's) against
a real PostgreSQL that answers or does not, pushing to a real Pushgateway; a
real Prometheus scrapes the Pushgateway with ``honor_labels`` (a
ServiceMonitor's ``honorLabels``) and evaluates the PrometheusRule the
operator rendered for the same HardenedService.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rampart_operator.render import render
from rampart_operator.settings import OperatorSettings
from tests.backup.cronjob import run_job_container
from tests.conftest import wait_until
from tests.monitoring import Prometheus, Pushgateway

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent  # where the project's rampart-backup is


def service(namespace: str, pushgateway: str) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": "checkout", "namespace": namespace, "uid": f"uid-{namespace}"},
        "spec": {
            "image": "ghcr.io/acme/checkout:1",
            "alerts": {},
            "backup": {
                "schedule": "0 2 * * *",
                "pushgateway": pushgateway,
                "sources": [
                    {"name": "db", "postgres": {"urlSecretRef": {"name": "db", "key": "url"}}}
                ],
                "destination": {"pvc": "backups"},
                "encryption": {"keySecretRef": {"name": "backup-key", "key": "key"}},
            },
        },
    }


def rendered(resource: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(m for m in render(resource, OperatorSettings()) if m["kind"] == kind)


def run_cron_job(
    resource: dict[str, Any], secrets: dict[tuple[str, str], str], tmp: Path
) -> subprocess.CompletedProcess[str]:
    return run_job_container(rendered(resource, "CronJob"), secrets, tmp)


def alerts(prometheus: Prometheus, name: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(prometheus.url + "/api/v1/alerts", timeout=5) as answer:
        found = json.load(answer)["data"]["alerts"]
    return [a for a in found if a["labels"]["alertname"] == name]


def test_a_failed_backup_fires_its_alert_with_the_labels_routing_relies_on(
    postgres, tmp_path: Path
) -> None:
    pushgateway = Pushgateway(tmp_path)
    shop, other = service("shop", pushgateway.url), service("other", pushgateway.url)
    rules = rendered(shop, "PrometheusRule")["spec"]["groups"]
    prometheus = Prometheus(
        tmp_path,
        {f"127.0.0.1:{pushgateway.port}": {"namespace": "monitoring"}},
        rules=rules,
        honor_labels=True,
    )
    try:
        good = {("db", "url"): postgres.url}
        for resource in (shop, other):
            done = run_cron_job(resource, good, tmp_path / resource["metadata"]["namespace"])
            assert done.returncode == 0, done.stderr

        def success(namespace: str) -> list[dict[str, Any]]:
            return prometheus.query(
                "rampart_backup_last_run_success"
                f'{{namespace="{namespace}", hardenedservice="checkout", '
                'backup="checkout-backup-db", kind="postgresql"}'
            )

        wait_until(lambda: bool(success("shop")) and bool(success("other")), timeout=30)
        assert success("shop")[0]["value"][1] == "1"
        assert alerts(prometheus, "RampartBackupFailed") == []  # healthy: silent

        # The database goes away: the next run fails, and says so.
        dead = {("db", "url"): "postgresql://nobody@127.0.0.1:1/shop"}
        failed = run_cron_job(shop, dead, tmp_path / "shop")
        assert failed.returncode == 3, failed.stderr  # unreachable
        wait_until(
            lambda: [
                a for a in alerts(prometheus, "RampartBackupFailed") if a["state"] == "firing"
            ],
            timeout=30,
        )
        (firing,) = alerts(prometheus, "RampartBackupFailed")
        labels = firing["labels"]
        assert labels["namespace"] == "shop"
        assert labels["hardenedservice"] == "checkout"
        assert labels["severity"] == "warning"
        assert labels["backup"] == "checkout-backup-db"
        # The other namespace's backup of the same name was not overwritten.
        assert success("other")[0]["value"][1] == "1"
        # The failed run left the last success's time in place: Stale measures from it.
        last_success = prometheus.query(
            'rampart_backup_last_success_timestamp_seconds{namespace="shop"}'
        )
        assert last_success, "a failed run erased the last success"
    finally:
        prometheus.stop()
        pushgateway.stop()


def test_a_label_the_agent_owns_or_a_bad_name_is_refused(tmp_path: Path) -> None:
    resource = service("shop", "http://127.0.0.1:1")
    job = rendered(resource, "CronJob")
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"].count("--label") == 2
    for bad in ("kind=x", "9lives=x", "novalue"):
        broken = [*copy.deepcopy(container["args"]), "--label", bad]
        done = subprocess.run(
            [str(VENV_BIN / broken[0]), *broken[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "RAMPART_BACKUP_SOURCE": "postgresql://x@127.0.0.1:1/x"},
        )
        assert done.returncode == 2, (bad, done.stderr)  # a usage error, before any work
        assert "--label" in done.stderr
