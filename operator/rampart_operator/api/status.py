"""``status``: what the operator observed and decided, as it writes it (kstatus-compatible)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.config import JsonDict

from .fields import ApiModel, Object

__all__ = [
    "BackupStatus",
    "Child",
    "Condition",
    "HardenedServiceStatus",
    "Phase",
    "RolloutStatus",
    "RunStatus",
]

Phase = Literal["Healthy", "Progressing", "RolledBack", "Failed"]

_INT64: JsonDict = {"format": "int64"}
_DATE_TIME: JsonDict = {"format": "date-time"}
_PRESERVED: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}
_BY_TYPE: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}


class Condition(ApiModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str | None = None
    message: str | None = None
    observed_generation: int | None = Field(None, json_schema_extra=_INT64)
    last_transition_time: str | None = Field(None, json_schema_extra=_DATE_TIME)


class Child(ApiModel):
    """A child the operator applied; ``ready`` on the stable Deployment only."""

    kind: str
    name: str
    ready: bool | None = None


class RunStatus(ApiModel):
    """A CronJob's last run, as the CronJob controller reports it."""

    last_outcome: Literal["Running", "NeverRun", "Succeeded", "Failed"]
    last_schedule_time: str | None = Field(None, json_schema_extra=_DATE_TIME)
    last_successful_time: str | None = Field(None, json_schema_extra=_DATE_TIME)


class BackupStatus(RunStatus):
    """One backup source: its backup CronJob's last run, and its restore drill's."""

    source: str
    last_drill: RunStatus | None = None


class RolloutStatus(ApiModel):
    """The rollout's state; the operator resumes from it after a restart."""

    # Beyond these, the state machine keeps what it needs to resume (canary.py).
    model_config = ConfigDict(extra="allow", json_schema_extra=_PRESERVED)

    phase: str | None = None
    weight: int | None = None
    step: int | None = None
    stable: str | None = None
    revision: str | None = None
    failed_checks: int | None = None
    message: str | None = None


class HardenedServiceStatus(ApiModel):
    model_config = ConfigDict(extra="allow", json_schema_extra=_PRESERVED)

    observed_generation: int | None = Field(None, json_schema_extra=_INT64)
    applied_generation: int | None = Field(None, json_schema_extra=_INT64)
    """The last generation whose children were all applied."""
    phase: Phase | None = None
    conditions: list[Condition] | None = Field(None, json_schema_extra=_BY_TYPE)
    children: list[Child] | None = None
    canary: RolloutStatus | None = None
    revisions: list[Object] | None = None
    """Known revisions, stable first: template and config checksum."""
    backups: list[BackupStatus] | None = None
    """Per backup source: its CronJob's last run and the last restore drill."""
