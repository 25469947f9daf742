"""What one look at a HardenedService decides, from what was read; pure.

``reconcile.look`` validates, reads (``reconcile.observe``) and calls
``decide``; ``reconcile.apply_decision`` carries the decision out. Nothing
here reads or writes the cluster (an import contract holds it to that), so a
decision can be tested from the objects alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .api import HardenedServiceSpec
from .api.fields import Object
from .render.placement import Placement, initial_placement
from .render.routers import Reference, router_for
from .rollout import Analysis, RolloutReads, plan_rollout
from .settings import OperatorSettings
from .status import Observation

__all__ = ["Decision", "Reads", "decide"]


@dataclass
class Decision:
    """What one look at a HardenedService decided, before anything is written.

    ``seen`` carries the problems that stop it (then nothing is applied) and
    the rollout's plan; ``placement`` is where each revision runs.
    """

    seen: Observation
    spec: HardenedServiceSpec | None  # None: a resource too invalid to read
    placement: Placement | None  # None: a resource too invalid to place

    @property
    def moves(self) -> bool:
        """Whether a rollout has somewhere to go: its state changes, or an annotation
        it acted on is to be removed. A periodic look that finds neither writes nothing."""
        plan = self.seen.rollout
        return plan is not None and (plan.changed or bool(plan.acted_on))


@dataclass(frozen=True)
class Reads:
    """Everything one look reads from the cluster; ``decide`` takes nothing else."""

    missing_secrets: list[tuple[str, str]]  # (field, Secret) the pods need and lack
    router: dict[Reference, Object | None]  # what the traffic router reads
    rollout: RolloutReads | None  # with spec.canary, unless a Secret is missing


def decide(
    resource: Object,
    spec: HardenedServiceSpec,
    reads: Reads,
    settings: OperatorSettings,
    *,
    firing: tuple[str, ...],
    analysis: Analysis | None,
    now: float,
) -> Decision:
    """The problems that stop the reconcile, and where the rollout goes; pure."""
    meta = resource["metadata"]
    namespace = meta.get("namespace", "default")
    seen = Observation(generation=meta.get("generation"))
    seen.problems = [
        f"{field}: Secret {secret} not found in {namespace}"
        for field, secret in reads.missing_secrets
    ]
    decision = Decision(seen, spec, initial_placement(spec))
    if not spec.canary:
        return decision
    problems = router_for(spec).problems(resource, spec, reads.router)
    seen.problems += [f"{p}: {m}" for p, m in problems]
    if seen.problems or reads.rollout is None:
        return decision
    plan = plan_rollout(
        resource,
        spec,
        reads.router,
        reads.rollout,
        now,
        firing,
        analysis,
        checksum_secret=settings.alert_token,
    )
    seen.rollout = plan
    decision.placement = plan.placement
    return decision
