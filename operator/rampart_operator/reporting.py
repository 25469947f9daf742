"""What the operator tells people: Events on the HardenedService, its metrics, its log.

The controller decides and applies; after each reconcile it hands the
observation and the actions here, and nothing here changes the cluster but
Events. One Event per verb names every child it touched; a rollout's notes
become Events and log lines; the rollout's weight, phase and outcomes, and
each child written, become metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, get_args

from .canary import Phase
from .events import post_event
from .kube import KubeClient
from .metrics import OperatorMetrics
from .reconcile import Action
from .status import Observation

__all__ = ["ROLLOUT_ENDS", "Reporter"]

log = logging.getLogger("rampart.operator")

ROLLOUT_ENDS = (
    ("Promoted", ""),
    *(("RolledBack", cause) for cause in ("alert", "analysis", "abort", "progressDeadline")),
)


class Reporter:
    """``firing``: the alerts now firing for a service, for the log line that says
    why an alert moved nothing."""

    def __init__(
        self, metrics: OperatorMetrics, firing: Callable[[str, str], tuple[str, ...]]
    ) -> None:
        self.metrics = metrics
        self.firing = firing

    async def report(
        self,
        client: KubeClient,
        body: dict[str, Any],
        seen: Observation,
        actions: list[Action],
        previous: dict[str, Any],
        alerted: float | None,
    ) -> None:
        meta = body["metadata"]
        namespace, name = meta.get("namespace", "default"), meta["name"]
        notes = seen.rollout.notes if seen.rollout is not None else []
        rolled_back = any(note.reason == "RolledBack" for note in notes)
        if alerted is not None and not rolled_back:
            # Said once per alert: an on-call person asks why nothing moved.
            state = seen.rollout.rollout.phase if seen.rollout is not None else "no canary"
            log.info(
                "%s/%s: alerts %s firing; nothing to roll back (rollout: %s)",
                namespace,
                name,
                ", ".join(self.firing(namespace, name)) or "no longer",
                state,
            )
        if alerted is not None and seen.traffic_applied is not None and rolled_back:
            self.metrics.alert_to_rollback.observe(seen.traffic_applied - alerted)
        if seen.rollout is not None:
            rollout = seen.rollout.rollout
            self.metrics.weight.labels(namespace, name).set(rollout.weight)
            for phase in get_args(Phase):
                self.metrics.phase.labels(namespace, name, phase).set(phase == rollout.phase)
            for result, cause in ROLLOUT_ENDS:
                # Every series from 0: a rate or increase sees the first rollback too.
                self.metrics.rollouts.labels(namespace, name, result, cause).inc(0)
            for note in notes:
                if note.reason in ("RolledBack", "Promoted"):
                    self.metrics.rollouts.labels(namespace, name, note.reason, note.cause).inc()
        for note in notes:
            log.log(
                logging.WARNING if note.type == "Warning" else logging.INFO,
                "%s/%s: %s",
                namespace,
                name,
                note.message,
            )
            await post_event(client, body, note.type, note.reason, note.message)
        # One Event per verb, naming every child: a new HardenedService is one
        # "Created" Event, not one write to the API server per child.
        done: dict[str, list[str]] = {}
        for action in actions:
            self.metrics.changes.labels(action.verb, action.kind).inc()
            done.setdefault(action.verb, []).append(f"{action.kind} {action.name}")
        for verb, children in done.items():
            message = f"{verb} {', '.join(children)}"
            await post_event(client, body, "Normal", verb.capitalize(), message)
        if seen.problems:
            self.metrics.reconciliations.labels("stalled").inc()
            was = {c.get("type"): c for c in previous.get("conditions", [])}.get("Stalled", {})
            message = "; ".join(seen.problems)
            if was.get("status") != "True" or was.get("message") != message:
                await post_event(client, body, "Warning", "Stalled", message)
        else:
            self.metrics.reconciliations.labels("applied").inc()
