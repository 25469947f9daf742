"""The HardenedService's status, computed from what the reconciler saw; no I/O.

Conditions follow kstatus, so Flux and Argo CD read them without plugins:
``Ready`` when the workload is available, ``Reconciling`` while it is getting
there, ``Stalled`` when the operator cannot proceed until the spec or the
cluster changes (with the field and reason in the message).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .api.fields import ApiModel
from .api.status import BackupStatus, Child, RunStatus

if TYPE_CHECKING:  # the plan's type only: status stays pure, the rollout does I/O
    from .rollout import RolloutPlan

__all__ = ["Observation", "backup_status", "compute_status"]


@dataclass
class Observation:
    generation: int | None
    problems: list[str] = field(default_factory=list)  # why nothing was applied
    children: list[Child] = field(default_factory=list)
    workload_ready: bool = False
    workload_message: str = ""
    backups: list[BackupStatus] = field(default_factory=list)  # per source
    rollout: RolloutPlan | None = None  # with spec.canary
    traffic_applied: float | None = None  # monotonic time the weights reached the API
    skipped: bool = False  # a rollout tick that found nothing to do


def backup_status(cron_job: dict[str, Any] | None) -> RunStatus:
    """The last run of a backup CronJob, as the CronJob controller reports it."""
    status = (cron_job or {}).get("status") or {}
    last_schedule = status.get("lastScheduleTime")
    last_success = status.get("lastSuccessfulTime")
    outcome = (
        "Running"
        if status.get("active")
        else "NeverRun"
        if not last_schedule
        else "Succeeded"
        if last_success and last_success >= last_schedule
        else "Failed"
    )
    return RunStatus(
        last_outcome=outcome, last_schedule_time=last_schedule, last_successful_time=last_success
    )


def _json(model: ApiModel) -> dict[str, Any]:
    """As the status stores it: the API's names, unset fields left out."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    previous: dict[str, dict[str, Any]],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
) -> dict[str, Any]:
    value = "True" if status else "False"
    before = previous.get(kind)
    changed = before is None or before.get("status") != value
    condition = {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _now() if changed else before["lastTransitionTime"],  # type: ignore[index]
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def compute_status(seen: Observation, previous: dict[str, Any] | None) -> dict[str, Any]:
    before = {c["type"]: c for c in (previous or {}).get("conditions", []) if "type" in c}
    gen = seen.generation
    rollout = seen.rollout.rollout if seen.rollout is not None else None
    if seen.problems:
        message = "; ".join(seen.problems)
        phase = "Failed"
        conditions = [
            _condition(before, "Ready", False, "InvalidSpec", message, gen),
            _condition(before, "Reconciling", False, "InvalidSpec", message, gen),
            _condition(before, "Stalled", True, "InvalidSpec", message, gen),
        ]
    elif rollout is not None and rollout.phase == "RolledBack":
        message = rollout.message
        phase = "RolledBack"
        conditions = [
            _condition(before, "Ready", False, "RolledBack", message, gen),
            _condition(before, "Reconciling", False, "RolledBack", message, gen),
            # The spec's version was refused: GitOps tools should show a failure.
            _condition(before, "Stalled", True, "RolledBack", message, gen),
        ]
    elif rollout is not None and rollout.active:
        message = rollout.message
        phase = "Progressing"
        conditions = [
            _condition(before, "Ready", False, "CanaryProgressing", message, gen),
            _condition(before, "Reconciling", True, "CanaryProgressing", message, gen),
            _condition(before, "Stalled", False, "CanaryProgressing", message, gen),
        ]
    elif seen.workload_ready:
        phase = "Healthy"
        conditions = [
            _condition(before, "Ready", True, "Available", seen.workload_message, gen),
            _condition(before, "Reconciling", False, "Available", seen.workload_message, gen),
            _condition(before, "Stalled", False, "Available", seen.workload_message, gen),
        ]
    else:
        phase = "Progressing"
        conditions = [
            _condition(before, "Ready", False, "RollingOut", seen.workload_message, gen),
            _condition(before, "Reconciling", True, "RollingOut", seen.workload_message, gen),
            _condition(before, "Stalled", False, "RollingOut", seen.workload_message, gen),
        ]
    if rollout is not None:
        rolled_back = rollout.phase == "RolledBack"
        conditions.append(
            _condition(
                before,
                "RolledBack",
                rolled_back,
                "RolledBack" if rolled_back else "NotRolledBack",
                rollout.message if rolled_back else "",
                gen,
            )
        )
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if seen.children:
        status["children"] = [_json(child) for child in seen.children]
    if seen.backups:
        status["backups"] = [_json(backup) for backup in seen.backups]
    if seen.rollout is not None:
        status.update(seen.rollout.status())
    if gen is not None:
        status["observedGeneration"] = gen
        if seen.children:
            # Every child applied for this generation (a stall marks it observed, not
            # applied): until then, each reconcile applies every child again.
            status["appliedGeneration"] = gen
    return status
