"""One backup CronJob per source in ``spec.backup``; no I/O.

The agent runs from the same image as the sidecar. Its key and every source
credential come from Secrets (a mounted key file, ``secretKeyRef``
environment variables), never inline in the CronJob.
"""

from __future__ import annotations

from typing import Any

from ..api.backup import BackupSpec, Retention, Source
from ..api.fields import SecretKeyRef
from ..api.spec import HardenedServiceSpec
from ..settings import OperatorSettings
from .names import child_labels, child_metadata
from .security import harden_container, harden_pod

__all__ = [
    "BACKUP_UID",
    "JOB_SECURITY",
    "backup_cron_jobs",
    "backup_job_name",
    "backup_secret_names",
    "key_volume",
]

KEY_DIR = "/var/run/rampart/backup-key"
DEST_DIR = "/backups"
SOURCE_DIR = "/source"
BACKUP_UID = 65532  # the image's non-root user; fsGroup lets it write the PVC
DEFAULT_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


# The agent's user in every backup and drill pod; fsGroup lets it read and write the PVC.
JOB_SECURITY = {"runAsUser": BACKUP_UID, "runAsGroup": BACKUP_UID, "fsGroup": BACKUP_UID}


def key_volume(key_ref: SecretKeyRef) -> dict[str, Any]:
    """The backup key, a file only its owner may read."""
    return {
        "name": "key",
        "secret": {
            "secretName": key_ref.name,
            "defaultMode": 0o400,
            "items": [{"key": key_ref.key, "path": "key"}],
        },
    }


def backup_job_name(owner_name: str, source: str) -> str:
    return f"{owner_name}-backup-{source}"


def backup_secret_names(spec: HardenedServiceSpec) -> list[str]:
    backup = spec.backup
    if backup is None:
        return []
    names = {backup.encryption.key_secret_ref.name}
    for source in backup.sources:
        for server in (source.postgres, source.redis):
            if server is not None:
                names.add(server.url_secret_ref.name)
    return sorted(names)


def _source_env_and_volumes(source: Source) -> tuple[list[Any], list[Any], list[Any]]:
    for server in (source.postgres, source.redis):
        if server is not None:
            ref = server.url_secret_ref
            return (
                [
                    {
                        "name": "RAMPART_BACKUP_SOURCE",
                        "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
                    }
                ],
                [],
                [],
            )
    path = source.path
    assert path is not None, "a source is postgres, redis or path"
    subpath = path.path.strip("/")
    url = f"file://{SOURCE_DIR}/{subpath}".rstrip("/")
    return (
        [{"name": "RAMPART_BACKUP_SOURCE", "value": url}],
        [{"name": "source", "mountPath": SOURCE_DIR, "readOnly": True}],
        [
            {
                "name": "source",
                "persistentVolumeClaim": {"claimName": path.claim_name, "readOnly": True},
            }
        ],
    )


def _cron_job(
    owner: dict[str, Any],
    backup: BackupSpec,
    source: Source,
    settings: OperatorSettings,
) -> dict[str, Any]:
    owner_name = owner["metadata"]["name"]
    name = backup_job_name(owner_name, source.name)
    retention = backup.retention or Retention()
    args = [
        "rampart-backup",
        "run",
        "--dest",
        f"{DEST_DIR}/{owner_name}/{source.name}",
        "--key-file",
        f"{KEY_DIR}/key",
        "--name",
        name,
        # What the backup alerts select on (render/alerts.py).
        "--label",
        f"namespace={owner['metadata'].get('namespace', 'default')}",
        "--label",
        f"hardenedservice={owner_name}",
    ]
    for keep, flag in (
        (retention.keep_last, "--keep-last"),
        (retention.keep_daily, "--keep-daily"),
        (retention.keep_weekly, "--keep-weekly"),
        (retention.keep_monthly, "--keep-monthly"),
    ):
        if keep:
            args += [flag, str(keep)]
    if backup.pushgateway:
        args += ["--pushgateway", backup.pushgateway]
    env, source_mounts, source_volumes = _source_env_and_volumes(source)
    key_ref = backup.encryption.key_secret_ref
    container = harden_container(
        {
            "name": "backup",
            "image": settings.sidecar_image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "env": env,
            "resources": backup.resources or DEFAULT_RESOURCES,
            "volumeMounts": [
                {"name": "backups", "mountPath": DEST_DIR},
                {"name": "key", "mountPath": KEY_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - staging, read-only root
                *source_mounts,
            ],
        }
    )
    labels = child_labels(owner_name, "backup")
    pod = harden_pod(
        {
            "restartPolicy": "Never",
            "securityContext": dict(JOB_SECURITY),
            "containers": [container],
            "volumes": [
                {
                    "name": "backups",
                    "persistentVolumeClaim": {"claimName": backup.destination.pvc},
                },
                key_volume(key_ref),
                {"name": "tmp", "emptyDir": {}},
                *source_volumes,
            ],
        }
    )
    spec: dict[str, Any] = {
        "schedule": backup.schedule,
        "suspend": backup.suspend,
        # Never two runs of one source at once: the second would race the first's pruning.
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                "backoffLimit": 2,
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
        "metadata": child_metadata(owner, name, "backup"),
        "spec": spec,
    }


def backup_cron_jobs(
    owner: dict[str, Any], spec: HardenedServiceSpec, settings: OperatorSettings
) -> list[dict[str, Any]]:
    backup = spec.backup
    if backup is None:
        return []
    return [_cron_job(owner, backup, source, settings) for source in backup.sources]
