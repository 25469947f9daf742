"""One restore-drill CronJob per backup source in ``spec.backup.drill``; no I/O.

A drill Job restores the newest backup of its source into a throwaway server
that lives only in the Job's pod: PostgreSQL or Redis as a native sidecar
container (Kubernetes 1.29+), listening on 127.0.0.1 only, its data on an
emptyDir; a path source restores into an emptyDir. The agent
(``rampart-backup drill``) waits for that server, verifies and restores the
backup, runs the checks and pushes what it measured (the restore's duration:
the RTO; the backup's age: the RPO). The production source's credentials are
never in the drill's pod, so a drill cannot touch it.
"""

from __future__ import annotations

from typing import Any

from rampart_common.durations import parse_duration

from ..api.backup import BackupSpec, Drill, DrillChecks, Source
from ..api.spec import HardenedServiceSpec
from ..settings import OperatorSettings
from .alerts import seconds_text
from .backup import DEST_DIR, JOB_SECURITY, KEY_DIR, key_volume
from .names import child_labels, child_metadata
from .security import harden_container, harden_pod

__all__ = ["DEFAULT_IMAGES", "TARGETS", "drill_cron_jobs", "drill_job_name"]

DEFAULT_IMAGES = {"postgres": "postgres:16-alpine", "redis": "redis:7-alpine"}
RESTORE_DIR = "/drill/restore"
# Where the agent restores each kind: the pod's own server, or its emptyDir.
TARGETS = {
    "postgres": "postgresql://postgres@127.0.0.1:5432/postgres",
    "redis": "redis://127.0.0.1:6379/0",
    "path": f"file://{RESTORE_DIR}",
}
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def drill_job_name(owner_name: str, source: str) -> str:
    return f"{owner_name}-drill-{source}"


def _server(kind: str, image: str) -> dict[str, Any]:
    """The throwaway server, a native sidecar: it starts first, is ready before the
    drill starts (its startup probe), and stops when the drill's container ends."""
    if kind == "postgres":
        server = {
            "name": "drill-postgres",
            "image": image,
            # Local connections only, trusted: nothing outside the pod can reach it.
            "args": ["-c", "listen_addresses=127.0.0.1"],
            "env": [
                {"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"},
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            ],
            "startupProbe": {
                "exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-U", "postgres"]},
                "periodSeconds": 2,
                "failureThreshold": 60,
            },
            "volumeMounts": [
                {"name": "drill-data", "mountPath": "/var/lib/postgresql/data"},
                {"name": "drill-run", "mountPath": "/var/run/postgresql"},
                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the pod's own emptyDir
            ],
        }
    else:
        server = {
            "name": "drill-redis",
            "image": image,
            "args": ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "/data"],
            "startupProbe": {
                "exec": {"command": ["redis-cli", "-h", "127.0.0.1", "ping"]},
                "periodSeconds": 2,
                "failureThreshold": 60,
            },
            "volumeMounts": [{"name": "drill-data", "mountPath": "/data"}],
        }
    server["restartPolicy"] = "Always"  # what makes an init container a sidecar
    server["resources"] = DEFAULT_RESOURCES
    return harden_container(server)


def _image(drill: Drill, kind: str) -> str:
    """The throwaway server's image: drill.images' for its kind, else the default."""
    images = drill.images
    chosen = None if images is None else {"postgres": images.postgres, "redis": images.redis}[kind]
    return chosen or DEFAULT_IMAGES[kind]


def _args(
    owner: dict[str, Any], backup: BackupSpec, drill: Drill, source: Source, name: str
) -> list[str]:
    owner_name = owner["metadata"]["name"]
    args = [
        "rampart-backup",
        "drill",
        # The same folder the source's backup CronJob writes.
        "--dest",
        f"{DEST_DIR}/{owner_name}/{source.name}",
        "--key-file",
        f"{KEY_DIR}/key",
        "--name",
        name,
        # What the drill alerts select on (render/alerts.py).
        "--label",
        f"namespace={owner['metadata'].get('namespace', 'default')}",
        "--label",
        f"hardenedservice={owner_name}",
    ]
    if backup.pushgateway:
        args += ["--pushgateway", backup.pushgateway]
    for duration, flag in ((drill.rto, "--rto-seconds"), (drill.rpo, "--rpo-seconds")):
        if duration:
            args += [flag, seconds_text(parse_duration(duration))]
    checks = drill.checks or DrillChecks()
    if source.kind == "postgres":
        for sql in checks.sql or []:
            args += ["--check-sql", sql]
    for command in checks.commands or []:
        args += ["--check-command", command]
    return args


def _cron_job(
    owner: dict[str, Any],
    backup: BackupSpec,
    drill: Drill,
    source: Source,
    settings: OperatorSettings,
) -> dict[str, Any]:
    owner_name = owner["metadata"]["name"]
    name = drill_job_name(owner_name, source.name)
    kind = source.kind
    key_ref = backup.encryption.key_secret_ref
    mounts = [
        {"name": "backups", "mountPath": DEST_DIR, "readOnly": True},
        {"name": "key", "mountPath": KEY_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - the decrypted staging file
    ]
    if kind == "path":
        mounts.append({"name": "drill-data", "mountPath": RESTORE_DIR})
    container = harden_container(
        {
            "name": "drill",
            "image": settings.sidecar_image,
            "imagePullPolicy": "IfNotPresent",
            "args": _args(owner, backup, drill, source, name),
            "env": [{"name": "RAMPART_BACKUP_TARGET", "value": TARGETS[kind]}],
            "resources": backup.resources or DEFAULT_RESOURCES,
            "volumeMounts": mounts,
        }
    )
    pod = harden_pod(
        {
            "restartPolicy": "Never",
            "securityContext": dict(JOB_SECURITY),
            **({"initContainers": [_server(kind, _image(drill, kind))]} if kind != "path" else {}),
            "containers": [container],
            "volumes": [
                {
                    "name": "backups",
                    "persistentVolumeClaim": {
                        "claimName": backup.destination.pvc,
                        "readOnly": True,
                    },
                },
                key_volume(key_ref),
                {"name": "tmp", "emptyDir": {}},
                {"name": "drill-data", "emptyDir": {}},
                {"name": "drill-run", "emptyDir": {}},
            ],
        }
    )
    labels = child_labels(owner_name, "drill")
    spec: dict[str, Any] = {
        "schedule": drill.schedule,
        "suspend": drill.suspend,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                # A failed drill is the finding: running it again would hide it.
                "backoffLimit": 0,
                "activeDeadlineSeconds": 6 * 3600,
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
    }
    if backup.time_zone:
        spec["timeZone"] = backup.time_zone
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": child_metadata(owner, name, "drill"),
        "spec": spec,
    }


def drill_cron_jobs(
    owner: dict[str, Any], spec: HardenedServiceSpec, settings: OperatorSettings
) -> list[dict[str, Any]]:
    backup = spec.backup
    if backup is None or backup.drill is None:
        return []
    return [_cron_job(owner, backup, backup.drill, source, settings) for source in backup.sources]
