"""Backup CronJobs rendered from spec.backup (kubernetes-validate runs on every example)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from rampart_operator.api.status import RunStatus
from rampart_operator.render import render
from rampart_operator.settings import OperatorSettings
from rampart_operator.status import backup_status
from rampart_operator.validation import validate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "with-backups.yaml").read_text())


def cron_jobs(resource=EXAMPLE):
    return {
        m["metadata"]["name"]: m
        for m in render(resource, OperatorSettings())
        if m["kind"] == "CronJob" and "-backup-" in m["metadata"]["name"]
    }


def test_one_cron_job_per_source_with_safe_defaults():
    jobs = cron_jobs()
    assert sorted(jobs) == ["orders-backup-cache", "orders-backup-db", "orders-backup-uploads"]
    for job in jobs.values():
        spec = job["spec"]
        assert spec["schedule"] == "0 2 * * *"
        assert spec["timeZone"] == "Europe/Berlin"
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["successfulJobsHistoryLimit"] == 3
        assert spec["failedJobsHistoryLimit"] == 3
        assert spec["suspend"] is False
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["args"][:2] == ["rampart-backup", "run"]
        assert "--keep-daily" in container["args"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["backups"]["persistentVolumeClaim"]["claimName"] == "backups"
        assert volumes["key"]["secret"]["secretName"] == "orders-backup-key"


def test_credentials_come_from_secrets_never_inline():
    jobs = cron_jobs()
    db_env = jobs["orders-backup-db"]["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert db_env == [
        {
            "name": "RAMPART_BACKUP_SOURCE",
            "valueFrom": {"secretKeyRef": {"name": "orders-db", "key": "url"}},
        }
    ]
    text = yaml.safe_dump(list(jobs.values()))
    assert "postgresql://" not in text
    assert "redis://" not in text


def test_path_sources_mount_their_volume_read_only():
    job = cron_jobs()["orders-backup-uploads"]
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = pod["containers"][0]["env"]
    assert env == [{"name": "RAMPART_BACKUP_SOURCE", "value": "file:///source/invoices"}]
    source = next(v for v in pod["volumes"] if v["name"] == "source")
    assert source["persistentVolumeClaim"] == {"claimName": "orders-uploads", "readOnly": True}


def test_suspend_and_no_backup_block():
    suspended = copy.deepcopy(EXAMPLE)
    suspended["spec"]["backup"]["suspend"] = True
    assert all(j["spec"]["suspend"] for j in cron_jobs(suspended).values())
    plain = copy.deepcopy(EXAMPLE)
    del plain["spec"]["backup"]
    assert cron_jobs(plain) == {}


@pytest.mark.parametrize(
    ("sources", "path", "fragment"),
    [
        (
            [
                {"name": "a", "postgres": {"urlSecretRef": {"name": "s", "key": "k"}}},
                {"name": "a", "redis": {"urlSecretRef": {"name": "s", "key": "k"}}},
            ],
            "spec.backup.sources.1.name",
            "twice",
        ),
        ([{"name": "a"}], "spec.backup.sources.0", "exactly one"),
        ([{"name": "Bad_Name", "path": {"claimName": "x"}}], "spec.backup.sources.0.name", ""),
    ],
)
def test_invalid_sources(sources, path, fragment):
    resource = copy.deepcopy(EXAMPLE)
    resource["spec"]["backup"]["sources"] = sources
    problems = validate(resource)
    assert any(p.path == path and fragment in p.message for p in problems), problems


def test_backup_status_from_the_cron_job():
    assert backup_status(None) == RunStatus(last_outcome="NeverRun")
    ok = {
        "status": {
            "lastScheduleTime": "2026-11-23T02:00:00Z",
            "lastSuccessfulTime": "2026-11-23T02:03:10Z",
        }
    }
    assert backup_status(ok).last_outcome == "Succeeded"
    failed = {
        "status": {
            "lastScheduleTime": "2026-11-23T02:00:00Z",
            "lastSuccessfulTime": "2026-11-22T02:03:10Z",
        }
    }
    # As the status stores it: the API's names.
    assert backup_status(failed).model_dump(by_alias=True, exclude_none=True) == {
        "lastOutcome": "Failed",
        "lastScheduleTime": "2026-11-23T02:00:00Z",
        "lastSuccessfulTime": "2026-11-22T02:03:10Z",
    }
    running = {"status": {"active": [{"name": "job"}], "lastScheduleTime": "x"}}
    assert backup_status(running).last_outcome == "Running"
