"""Restore-drill CronJobs rendered from spec.backup.drill."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from rampart_operator.render import render
from rampart_operator.render.cron import longest_gap
from rampart_operator.settings import OperatorSettings
from rampart_operator.validation import validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "with-backups.yaml").read_text())


def drills(resource: dict[str, Any] = EXAMPLE) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["name"]: m
        for m in render(resource, OperatorSettings())
        if m["kind"] == "CronJob" and "-drill-" in m["metadata"]["name"]
    }


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def args(job: dict[str, Any]) -> list[str]:
    container = next(c for c in pod(job)["containers"] if c["name"] == "drill")
    return list(container["args"])


def test_one_drill_per_source_reading_what_its_backup_writes() -> None:
    jobs = drills()
    assert sorted(jobs) == ["orders-drill-cache", "orders-drill-db", "orders-drill-uploads"]
    backups = {
        m["metadata"]["name"]: m
        for m in render(EXAMPLE, OperatorSettings())
        if m["kind"] == "CronJob"
    }
    for source in ("db", "cache", "uploads"):
        drill = args(jobs[f"orders-drill-{source}"])
        backup = pod(backups[f"orders-backup-{source}"])["containers"][0]["args"]
        assert drill[:2] == ["rampart-backup", "drill"]
        # The same folder, the same key file, the labels the alerts select on.
        for flag in ("--dest", "--key-file"):
            assert drill[drill.index(flag) + 1] == backup[backup.index(flag) + 1]
        assert drill[drill.index("--name") + 1] == f"orders-drill-{source}"
        assert "namespace=shop" in drill
        assert "hardenedservice=orders" in drill
        assert drill[drill.index("--pushgateway") + 1] == "http://pushgateway.monitoring:9091"
        assert drill[drill.index("--rto-seconds") + 1] == "900"
        assert drill[drill.index("--rpo-seconds") + 1] == "93600"
    # SQL checks go to the PostgreSQL source only.
    assert "--check-sql" in args(jobs["orders-drill-db"])
    assert "--check-sql" not in args(jobs["orders-drill-cache"])


def test_the_production_source_is_out_of_reach() -> None:
    for job in drills().values():
        text = yaml.safe_dump(job)
        # No Secret but the backup key: the source's credentials never reach the pod.
        assert "secretKeyRef" not in text
        assert "orders-db" not in text
        assert "orders-redis" not in text
        assert "orders-uploads" not in text
        (drill,) = pod(job)["containers"]
        env = {e["name"]: e["value"] for e in drill["env"]}
        assert set(env) == {"RAMPART_BACKUP_TARGET"}
        assert (
            env["RAMPART_BACKUP_TARGET"]
            .split("://")[1]
            .startswith(("postgres@127.0.0.1", "127.0.0.1", "/drill/"))
        )
        backups = next(v for v in pod(job)["volumes"] if v["name"] == "backups")
        assert backups["persistentVolumeClaim"]["readOnly"] is True
        mount = next(m for m in drill["volumeMounts"] if m["name"] == "backups")
        assert mount["readOnly"] is True


def test_the_throwaway_server_is_a_native_sidecar_on_loopback() -> None:
    jobs = drills()
    (postgres,) = pod(jobs["orders-drill-db"])["initContainers"]
    (redis,) = pod(jobs["orders-drill-cache"])["initContainers"]
    assert "initContainers" not in pod(jobs["orders-drill-uploads"])
    for server, image in ((postgres, "postgres:16-alpine"), (redis, "redis:7-alpine")):
        assert server["restartPolicy"] == "Always"  # a sidecar: it ends with the drill
        assert server["image"] == image
        assert "startupProbe" in server  # the drill starts once it answers
        assert server["securityContext"]["allowPrivilegeEscalation"] is False
    assert "listen_addresses=127.0.0.1" in postgres["args"]
    assert redis["args"][:2] == ["--bind", "127.0.0.1"]
    for job in jobs.values():
        assert job["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
        assert pod(job)["securityContext"]["runAsNonRoot"] is True


def test_images_are_a_setting_and_no_drill_renders_none() -> None:
    custom = copy.deepcopy(EXAMPLE)
    custom["spec"]["backup"]["drill"]["images"] = {"postgres": "postgres:15.6"}
    (server,) = pod(drills(custom)["orders-drill-db"])["initContainers"]
    assert server["image"] == "postgres:15.6"
    plain = copy.deepcopy(EXAMPLE)
    del plain["spec"]["backup"]["drill"]
    assert drills(plain) == {}


@pytest.mark.parametrize(
    ("schedule", "hours"),
    [("0 3 * * *", 24), ("0 3 * * 1", 168), ("@weekly", 168), ("0 */6 * * *", 6)],
)
def test_the_missing_alert_waits_twice_the_longest_gap(schedule: str, hours: int) -> None:
    assert longest_gap(schedule) == hours * 3600
    resource = copy.deepcopy(EXAMPLE)
    resource["spec"]["backup"]["drill"]["schedule"] = schedule
    resource["spec"]["alerts"] = {}
    rule = next(m for m in render(resource, OperatorSettings()) if m["kind"] == "PrometheusRule")
    missing = next(
        r
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if r.get("alert") == "RampartRestoreDrillMissing"
    )
    assert missing["expr"].endswith(f"> {2 * hours * 3600}")


@pytest.mark.parametrize("schedule", ["0 3 * *", "61 * * * *", "0 3 * * nonday", "0 0 31 2 *"])
def test_a_schedule_cron_cannot_run_is_refused_with_the_field(schedule: str) -> None:
    resource = copy.deepcopy(EXAMPLE)
    resource["spec"]["backup"]["drill"]["schedule"] = schedule
    problems = [str(p) for p in validate(resource)]
    assert any(p.startswith("spec.backup.drill.schedule") for p in problems), problems
