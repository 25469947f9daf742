"""Where each revision runs and at what weight: the rollout state, as render needs it.

The rollout builds a ``Placement`` from ``status.canary`` (rollout.place);
offline rendering (and a HardenedService the operator has not seen yet)
uses ``initial_placement``: the stable Deployment at the spec's starting
version, the canary at zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api import HardenedServiceSpec
from ..revisions import Revision, app_template, revision, target_template
from .routers import Reference

__all__ = ["Placement", "initial_placement"]


@dataclass(frozen=True)
class Placement:
    stable: Revision
    canary: Revision | None = None  # None: the spec has no spec.canary
    stable_replicas: int = 0
    canary_replicas: int = 0
    weight: int = 0  # percent of traffic to the canary
    live: dict[Reference, dict[str, Any] | None] | None = None  # what the router reads


def initial_placement(spec: HardenedServiceSpec) -> Placement:
    replicas = spec.replicas
    if not spec.canary:
        return Placement(stable=revision(target_template(spec), ""), stable_replicas=replicas)
    start = revision(app_template(spec), "")
    return Placement(stable=start, canary=start, stable_replicas=replicas)
