"""One look at a rollout: read what ``canary.advance`` needs from the cluster, and its answer.

The reads are the ConfigMaps and Secrets the target template uses (for its
revision id) and the two Deployments (are the canary's pods up, has the
stable one rolled out). The answer is a ``RolloutPlan``: the new state for
``status.canary``, the revisions for ``status.revisions``, the ``Placement``
to render, and what to tell the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .api.canary import CanarySpec
from .api.fields import Object
from .api.spec import HardenedServiceSpec
from .canary import Note, Observed, Policy, Rollout, Verdict, advance, initial
from .readiness import deployment_ready
from .render.placement import Placement, initial_placement
from .render.routers import Reference, router_for
from .render.workload import REVISION_ANNOTATION
from .revisions import (
    Revision,
    app_template,
    checksum,
    checksum_key,
    config_references,
    revision,
    target_template,
)

__all__ = [
    "ABORT",
    "PROMOTE",
    "Analysis",
    "RolloutPlan",
    "RolloutReads",
    "place",
    "placement_from_status",
    "plan_rollout",
    "rolling_back",
]

PROMOTE = "rampart.dev/promote"
ABORT = "rampart.dev/abort"


@dataclass(frozen=True)
class Analysis:
    """A verdict, and the step it was taken for: a stale one is dropped, not applied."""

    verdict: Verdict
    revision: str
    step: int


@dataclass
class RolloutPlan:
    before: Rollout | None
    rollout: Rollout
    revisions: list[Revision]
    placement: Placement
    notes: list[Note] = field(default_factory=list)
    acted_on: list[str] = field(default_factory=list)  # annotations to remove

    @property
    def changed(self) -> bool:
        return self.before != self.rollout

    @property
    def rolled_back(self) -> bool:
        """Whether this look is the one that rolled the canary back."""
        return self.rollout.phase == "RolledBack" and (
            self.before is None or self.before.phase != "RolledBack"
        )

    def status(self) -> Object:
        return {
            "canary": self.rollout.to_status(),
            "revisions": [r.to_status() for r in self.revisions],
        }


@dataclass(frozen=True)
class RolloutReads:
    """What a rollout's plan needs from the cluster, read before it is made.

    ``config``: every ConfigMap and Secret the templates read (None: missing);
    ``stable`` and ``canary``: the two Deployments, or None when absent or not
    read (a rollback does not wait for them).
    """

    config: dict[tuple[str, str], Object | None]
    stable: Object | None = None
    canary: Object | None = None


@dataclass(frozen=True)
class _Stored:
    """The rollout as the status keeps it: its state, when it can be resumed, and the
    revisions it knows (newest order as stored)."""

    before: Rollout | None  # as stored, resumable or not
    state: Rollout | None  # None: nothing to resume, the rollout starts afresh
    known: dict[str, Revision]
    order: list[str]


def _stored(status: Object | None) -> _Stored:
    status = status or {}
    entries = status.get("revisions") or []
    known = {entry["revision"]: Revision.from_status(entry) for entry in entries}
    before = Rollout.from_status(status.get("canary"))
    resumable = before is not None and before.stable in known
    order = [entry["revision"] for entry in entries]
    return _Stored(before, before if resumable else None, known, order)


def rolling_back(resource: Object, spec: HardenedServiceSpec, firing: tuple[str, ...]) -> bool:
    """Whether this look rolls an active rollout back (an abort, or an alert it
    heeds): then the Deployments need not be read, and no rollback waits on them."""
    state = _stored(resource.get("status")).state
    if state is None:
        return False  # plan_rollout starts it afresh
    annotations = resource["metadata"].get("annotations") or {}
    alerted = bool(firing) and _canary(spec).rollback_on_alerts
    return state.active and (ABORT in annotations or alerted)


def _revision_of(template: Object, reads: RolloutReads, key: bytes) -> Revision:
    objects = {ref: reads.config.get(ref) for ref in config_references(template)}
    return revision(template, checksum(objects, key))


def _pods_match(live: Object | None, revision_id: str, replicas: int) -> bool:
    if live is None:
        return False
    annotations = live["spec"]["template"].get("metadata", {}).get("annotations", {})
    return (
        annotations.get(REVISION_ANNOTATION) == revision_id
        and live["spec"].get("replicas") == replicas
        and deployment_ready(live)[0]
    )


def _keep(
    known: dict[str, Revision], order: list[str], state: Rollout, history: int
) -> list[Revision]:
    """The stable revision first, then the one rolling out, then the previous ones."""
    pinned = [state.stable, state.revision, state.previous]
    ids: list[str] = []
    for rid in [*pinned, *order]:
        if rid and rid in known and rid not in ids:
            ids.append(rid)
    needed = {rid for rid in pinned if rid}
    kept = [rid for i, rid in enumerate(ids) if rid in needed or i < history]
    return [known[rid] for rid in kept]


def plan_rollout(
    resource: Object,
    spec: HardenedServiceSpec,
    live: dict[Reference, Object | None],
    reads: RolloutReads,
    now: float,
    firing: tuple[str, ...] = (),
    analysis: Analysis | None = None,
    *,
    checksum_secret: str,
) -> RolloutPlan:
    """Where the rollout goes from what was read (``observe_rollout``); pure.

    ``checksum_secret`` keys the config checksums (the alert token; see ``revisions``).
    """
    meta = resource["metadata"]
    key = checksum_key(meta.get("uid") or "", checksum_secret)
    policy = Policy.from_spec(_canary(spec))
    stored = _stored(resource.get("status"))
    known, order, before = stored.known, stored.order, stored.before

    target = _revision_of(target_template(spec), reads, key)
    state = stored.state
    if state is None:
        start = _revision_of(app_template(spec), reads, key)
        known[start.id] = start
        state = initial(start.id)
    known.setdefault(target.id, target)

    current = place(spec, state, known, live)
    annotations = meta.get("annotations") or {}
    verdict = None
    if (
        analysis is not None
        and analysis.revision == state.revision
        and analysis.step == state.step
        and state.phase == "Progressing"
        and (state.last_analysis is None or analysis.verdict.at > state.last_analysis)
    ):
        verdict = analysis.verdict
    seen = Observed(
        now=now,
        target=target.id,
        canary_ready=_pods_match(reads.canary, state.revision, current.canary_replicas),
        stable_ready=_pods_match(reads.stable, state.stable, current.stable_replicas),
        verdict=verdict,
        firing=firing,
        promote=PROMOTE in annotations,
        abort=ABORT in annotations,
    )
    after, notes = advance(policy, state, seen)
    acted_on = [key for key in (PROMOTE, ABORT) if key in annotations]
    history = _canary(spec).revision_history
    return RolloutPlan(
        before=before,
        rollout=after,
        revisions=_keep(known, order, after, history),
        placement=place(spec, after, known, live),
        notes=notes,
        acted_on=acted_on,
    )


def placement_from_status(
    spec: HardenedServiceSpec,
    status: Object | None,
    live: dict[Reference, Object | None] | None = None,
) -> Placement:
    """The placement a stored rollout stands for (``initial_placement`` when none is)."""
    stored = _stored(status)
    if not spec.canary or stored.state is None:
        return Placement(**{**initial_placement(spec).__dict__, "live": live})
    return place(spec, stored.state, stored.known, live)


def place(
    spec: HardenedServiceSpec,
    rollout: Rollout,
    known: dict[str, Revision],
    live: dict[Reference, Object | None] | None = None,
) -> Placement:
    router = router_for(spec)
    total = spec.replicas
    stable = known[rollout.stable]
    canary = known.get(rollout.revision, stable)
    if not rollout.active:
        return Placement(stable, canary, total, 0, 0, live)
    policy = Policy.from_spec(_canary(spec))
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


def _canary(spec: HardenedServiceSpec) -> CanarySpec:
    if spec.canary is None:  # only a spec with a canary has a rollout
        raise ValueError("no spec.canary")
    return spec.canary
