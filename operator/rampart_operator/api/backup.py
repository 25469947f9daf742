"""``spec.backup``: scheduled, encrypted backups and their restore drills."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from .fields import ApiModel, DurationText, Object, Rule, SecretKeyRef, rules

__all__ = [
    "BackupSpec",
    "Destination",
    "Drill",
    "DrillChecks",
    "DrillImages",
    "Encryption",
    "PathSource",
    "Retention",
    "Source",
    "UrlSource",
]

ONE_KIND = Rule(
    "[has(self.postgres), has(self.redis), has(self.path)].filter(x, x).size() == 1",
    "set exactly one of postgres, redis, path",
)
KINDS = ("postgres", "redis", "path")


class UrlSource(ApiModel):
    url_secret_ref: SecretKeyRef
    """The server's URL, with its credentials, in a Secret."""


class PathSource(ApiModel):
    claim_name: str = Field(min_length=1)
    """A PersistentVolumeClaim in this namespace."""
    path: str = "/"
    """The directory within it."""


class Source(ApiModel):
    model_config = ConfigDict(json_schema_extra=rules(ONE_KIND))

    name: str = Field(pattern="^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=20)
    """Names the source's CronJob and its backups."""
    postgres: UrlSource | None = None
    """A PostgreSQL database, dumped with pg_dump."""
    redis: UrlSource | None = None
    """A Redis server's keys, each in its DUMP serialization."""
    path: PathSource | None = None
    """Files on a PersistentVolumeClaim."""

    @property
    def kind(self) -> str:
        """``postgres``, ``redis`` or ``path``: the one that is set."""
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    def problems(self, path: str) -> list[tuple[str, str]]:
        set_ = [kind for kind in KINDS if getattr(self, kind) is not None]
        return [] if len(set_) == 1 else [ONE_KIND.problem(path)]


class Destination(ApiModel):
    pvc: str = Field(min_length=1)
    """The PersistentVolumeClaim the encrypted backups are written to."""


Keep = Annotated[int, Field(ge=0, le=1000)]


class Retention(ApiModel):
    """Which backups pruning keeps (the union of the four); absent: all."""

    keep_last: Keep | None = None
    keep_daily: Keep | None = None
    keep_weekly: Keep | None = None
    keep_monthly: Keep | None = None


class Encryption(ApiModel):
    key_secret_ref: SecretKeyRef
    """The encryption key (32 random bytes: raw, hex or base64), in a Secret."""


Check = Annotated[str, Field(min_length=1, max_length=4096)]


class DrillChecks(ApiModel):
    """Beyond the built-in check (the restore is not empty)."""

    sql: list[Check] | None = Field(None, max_length=20)
    """SQL run on a restored PostgreSQL source; each must succeed, and one that returns
    false or 0 fails the drill."""
    commands: list[Check] | None = Field(None, max_length=20)
    """Shell commands run in the drill's container with RAMPART_DRILL_TARGET set to the
    restored copy; each must exit 0."""


class DrillImages(ApiModel):
    """The throwaway servers' images: the same major version as production (a drill
    refuses another). Default: postgres:16-alpine, redis:7-alpine."""

    postgres: str | None = Field(None, min_length=1)
    redis: str | None = Field(None, min_length=1)


class Drill(ApiModel):
    """Restore drills: on this schedule, one Job per source restores the newest backup
    into a throwaway server in its own pod, checks it and records the restore's
    duration (RTO) and the backup's age (RPO) (docs/backups.md#restore-drills)."""

    schedule: str = Field(min_length=1)
    """Cron schedule (five fields, or a macro such as @daily). It must run at least
    twice a year: RampartRestoreDrillMissing waits twice its longest gap."""
    suspend: bool = False
    rto: DurationText | None = None
    """Recovery time objective: RampartRestoreDrillRTOExceeded fires when a drill's
    restore takes longer."""
    rpo: DurationText | None = None
    """Recovery point objective: RampartRestoreDrillRPOExceeded fires when the newest
    backup a drill restored was older than this."""
    checks: DrillChecks | None = None
    images: DrillImages | None = None


class BackupSpec(ApiModel):
    """Scheduled, encrypted backups: one CronJob per source (docs/backups.md)."""

    schedule: str = Field(min_length=1)
    """Cron schedule, as a CronJob takes it (five fields, or a macro such as @daily)."""
    time_zone: str | None = None
    """The schedule's IANA time zone; absent: the controller manager's."""
    suspend: bool = False
    """true: no new runs."""
    sources: list[Source] = Field(
        min_length=1,
        max_length=10,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    destination: Destination
    retention: Retention | None = None
    encryption: Encryption
    resources: Object | None = None
    """The backup container's ResourceRequirements."""
    pushgateway: str | None = None
    """Pushgateway URL for the run's metrics."""
    drill: Drill | None = None

    def problems(self, path: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        names = [source.name for source in self.sources]
        for index, source in enumerate(self.sources):
            found += source.problems(f"{path}.sources.{index}")
            if names.count(source.name) > 1:
                found.append((f"{path}.sources.{index}.name", f"{source.name} appears twice"))
        return found
