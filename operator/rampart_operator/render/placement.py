"""Where each revision runs and at what weight: the rollout state, as render needs it.

The reconciler builds a ``Placement`` from the rollout in ``status.canary``;
offline rendering (and a HardenedService the operator has not seen yet)
uses ``initial_placement``: the stable Deployment at the spec's starting
version, the canary at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..canary import Policy, Rollout
from ..revisions import Revision, app_template, revision, target_template
from ..routers import Reference, router_for

__all__ = ["Placement", "initial_placement", "placement_from_status"]


@dataclass(frozen=True)
class Placement:
    stable: Revision
    canary: Revision | None = None  # None: the spec has no spec.canary
    stable_replicas: int = 0
    canary_replicas: int = 0
    weight: int = 0  # percent of traffic to the canary
    live: dict[Reference, dict[str, Any] | None] | None = None  # what the router reads


def initial_placement(spec: dict[str, Any]) -> Placement:
    replicas = spec["replicas"]
    if not spec.get("canary"):
        return Placement(stable=revision(target_template(spec), ""), stable_replicas=replicas)
    start = revision(app_template(spec), "")
    return Placement(stable=start, canary=start, stable_replicas=replicas)


def placement_from_status(
    spec: dict[str, Any],
    status: dict[str, Any] | None,
    live: dict[Reference, dict[str, Any] | None] | None = None,
) -> Placement:
    """The placement a stored rollout stands for (``initial_placement`` when none is)."""
    status = status or {}
    rollout = Rollout.from_status(status.get("canary"))
    known = {r["revision"]: Revision.from_status(r) for r in status.get("revisions") or []}
    if not spec.get("canary") or rollout is None or rollout.stable not in known:
        return Placement(**{**initial_placement(spec).__dict__, "live": live})
    return place(spec, rollout, known, live)


def place(
    spec: dict[str, Any],
    rollout: Rollout,
    known: dict[str, Revision],
    live: dict[Reference, dict[str, Any] | None] | None = None,
) -> Placement:
    router = router_for(spec)
    total = spec["replicas"]
    stable = known[rollout.stable]
    canary = known.get(rollout.revision, stable)
    if not rollout.active:
        return Placement(stable, canary, total, 0, 0, live)
    policy = Policy.from_spec(spec["canary"])
    step_weight = policy.steps[min(rollout.step, len(policy.steps) - 1)].weight
    if rollout.phase == "Promoting":
        # The stable pods take the new template at full strength before the canary goes.
        return Placement(
            stable,
            canary,
            total,
            router.canary_replicas(total, rollout.weight),
            rollout.weight,
            live,
        )
    return Placement(
        stable,
        canary,
        router.stable_replicas(total, rollout.weight),
        router.canary_replicas(total, max(step_weight, rollout.weight)),
        rollout.weight,
        live,
    )
