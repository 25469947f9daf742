"""Bring the cluster in line with one HardenedService: the only place children are written.

One reconcile is ``look`` then ``apply_decision``. ``look`` validates, then
``observe`` reads what a decision needs (whether the Secrets the pods need
exist, what the traffic router reads, the ConfigMaps and Secrets the
revisions hash, the two Deployments) and ``decide`` (pure) turns that into
the problems and the rollout's plan. ``apply_decision`` creates or patches
each rendered child.
A problem leaves every child untouched. An object that
already carries a child's name but is not owned by this HardenedService is
never overwritten. Children the spec no longer asks for (a NetworkPolicy
switched off) are deleted. The result is an ``Observation`` for the status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .api import HardenedServiceSpec, parse_spec
from .api.status import BackupStatus, Child
from .crd import GROUP, KIND, VERSION
from .decision import Decision, Reads, decide
from .kube import ApiError, KubeClient, NotOwnedError
from .readiness import deployment_ready
from .render import render
from .render.backup import backup_job_name, backup_secret_names
from .render.drill import drill_job_name
from .render.names import OWNER_LABEL
from .render.routers import router_for
from .render.sidecar import secret_names
from .revisions import app_template, config_references, target_template
from .rollout import Analysis, RolloutReads, rolling_back
from .settings import OperatorSettings
from .status import Observation, backup_status
from .validation import limits_of, validate

__all__ = [
    "Action",
    "apply_decision",
    "contains",
    "leave_scale",
    "look",
    "observe",
    "scaled_by_others",
]

log = logging.getLogger("rampart.reconcile")

# Kinds rendered only when the spec asks for them, so they may need deleting.
OPTIONAL_KINDS = (
    ("networking.k8s.io/v1", "NetworkPolicy", ""),
    ("policy/v1", "PodDisruptionBudget", ""),
    ("monitoring.coreos.com/v1", "PrometheusRule", ""),
    ("monitoring.coreos.com/v1", "PodMonitor", ""),
    ("monitoring.coreos.com/v1", "ServiceMonitor", ""),
    ("v1", "Service", "-metrics"),
    ("apps/v1", "Deployment", "-canary"),
    ("v1", "Service", "-canary"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute", ""),
    ("networking.k8s.io/v1", "Ingress", "-canary"),
)


@dataclass(frozen=True)
class Action:
    verb: str  # created, updated, deleted
    kind: str
    name: str


def _carries_weight(manifest: dict[str, Any]) -> bool:
    """The objects that set the canary's share: its route, or its replica count."""
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    return kind in ("HTTPRoute", "Ingress") or (kind == "Deployment" and name.endswith("-canary"))


def _rollback_order(manifest: dict[str, Any]) -> int:
    if manifest["kind"] in ("HTTPRoute", "Ingress"):
        return 0
    if manifest["kind"] == "Deployment":
        return 1 if manifest["metadata"]["name"].endswith("-canary") else 2
    return 3  # sort is stable: the rest keep their order


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` already has every field ``desired`` sets (servers add defaults).

    A field the server left out is as good as an empty or zero one: the API
    server drops ``env: []``, ``hostNetwork: false`` and every other zero value
    of an ``omitempty`` field, and taking that for drift would patch it back at
    every check, forever.
    """
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            contains(live[key], value) if key in live else _zero(value)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


def _zero(value: Any) -> bool:
    """Go's zero values, which ``omitempty`` leaves out of what the server returns."""
    return value is None or value in ("", 0, False, [], {})


def _owned_by(live: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(
        ref.get("kind") == owner["kind"] and ref.get("uid") == uid
        for ref in live.get("metadata", {}).get("ownerReferences", [])
    )


def scaled_by_others(live: dict[str, Any]) -> bool:
    """Whether ``spec.replicas`` was last set through the scale subresource: by a
    HorizontalPodAutoscaler or ``kubectl scale``, whose field it then is.

    The API server records who owns each field (``managedFields``); a write of
    the object itself takes ``f:replicas`` back, so only a scaler's write since
    the operator's last one counts.
    """
    for entry in live.get("metadata", {}).get("managedFields") or []:
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if entry.get("subresource") == "scale" and "f:replicas" in fields:
            return True
    return False


def leave_scale(desired: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """``desired`` without ``spec.replicas`` when a scaler owns them (``scaled_by_others``)."""
    if desired.get("kind") != "Deployment" or not scaled_by_others(live):
        return desired
    return {**desired, "spec": {k: v for k, v in desired["spec"].items() if k != "replicas"}}


async def apply(
    client: KubeClient,
    owner: dict[str, Any],
    desired: dict[str, Any],
    *known: dict[str, Any] | None,
    create_first: bool = False,
    scalable: bool = False,
    always: bool = False,
) -> tuple[Action | None, dict[str, Any]]:
    """Create or update one child by server-side apply; what was done, and the child
    as the server now has it.

    ``known`` is the child as just read (None: absent), to save reading it again.
    ``create_first`` (a HardenedService not reconciled before, whose children most
    likely do not exist) creates without reading; a child that exists after all
    (409) is read and handled as usual. A ``scalable`` child's replicas are
    left to whoever scaled it since (an HPA): ``spec.replicas`` is then only
    where it starts. A child that already holds everything ``desired`` says is
    not written, unless ``always`` (this generation's children are not all
    applied yet: applying again removes what the last apply set and this one no
    longer does).
    """
    meta = desired["metadata"]
    if create_first and not known:
        try:
            created = await client.apply(desired, create_only=True)
        except ApiError as error:
            if error.status != 409:
                raise
        else:
            return Action("created", desired["kind"], meta["name"]), created
    if known:
        live = known[0]
    else:
        live = await client.get(
            desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"]
        )
    if live is None:
        # A child that went missing. When its namespace is being deleted, the
        # namespace controller took it (children go before their owner): creating
        # it again would only be refused, once per child and per drift check.
        namespace = await client.get("v1", "Namespace", None, meta["namespace"])
        if namespace is not None and namespace["metadata"].get("deletionTimestamp"):
            raise ApiError(403, f"namespace {meta['namespace']} is being terminated")
        # Create-only: if someone else's object took the name meanwhile, 409 and a retry.
        created = await client.apply(desired, create_only=True)
        return Action("created", desired["kind"], meta["name"]), created
    if not _owned_by(live, owner):
        raise NotOwnedError(
            409,
            f"{desired['kind']} {meta['name']} exists and is not owned by "
            f"this HardenedService; rename or remove it",
        )
    if scalable:
        desired = leave_scale(desired, live)
    if not always and contains(live, desired):
        return None, live
    # The object just judged ours, not one recreated by someone else since.
    desired = {**desired, "metadata": {**desired["metadata"], "uid": live["metadata"]["uid"]}}
    patched = await client.apply(desired)
    return Action("updated", desired["kind"], meta["name"]), patched


async def look(
    client: KubeClient,
    resource: dict[str, Any],
    settings: OperatorSettings,
    *,
    firing: tuple[str, ...] = (),
    analysis: Analysis | None = None,
    now: float | None = None,
) -> Decision:
    """Observe, then decide: validate (no reads for an invalid resource), read what
    the decision needs (``observe``), and decide where it goes (``decide``, pure).

    ``firing`` (alert names) and ``analysis`` are what the controller knows of a rollout.
    """
    problems = validate(resource, limits_of(settings))
    if problems:
        seen = Observation(generation=resource["metadata"].get("generation"))
        seen.problems = [str(p) for p in problems]
        return Decision(seen, None, None)
    spec = parse_spec(resource)
    reads = await observe(client, resource, spec, firing)
    return decide(
        resource,
        spec,
        reads,
        settings,
        firing=firing,
        analysis=analysis,
        now=time.time() if now is None else now,
    )


async def observe(
    client: KubeClient, resource: dict[str, Any], spec: HardenedServiceSpec, firing: tuple[str, ...]
) -> Reads:
    """The Secrets the pods need, what the traffic router reads, and what the rollout
    plan needs (the configuration the revisions hash, the Deployments)."""
    namespace = resource["metadata"].get("namespace", "default")
    missing = [
        (field, secret)
        for field, secret in [("spec.sidecar.cache", s) for s in secret_names(spec)]
        + [("spec.backup", s) for s in backup_secret_names(spec)]
        if await client.get("v1", "Secret", namespace, secret) is None
    ]
    if not spec.canary:
        return Reads(missing, {}, None)
    refs = router_for(spec).reads(spec)
    router = {ref: await client.get(*ref[:2], namespace, ref[2]) for ref in refs}
    if missing:
        return Reads(missing, router, None)  # stalled: no rollout moves, nothing to read for it
    return Reads(missing, router, await observe_rollout(client, resource, spec, firing))


async def observe_rollout(
    client: KubeClient, resource: dict[str, Any], spec: HardenedServiceSpec, firing: tuple[str, ...]
) -> RolloutReads:
    meta = resource["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    refs = sorted(
        {*config_references(target_template(spec)), *config_references(app_template(spec))}
    )
    config = {ref: await client.get("v1", ref[0], namespace, ref[1]) for ref in refs}
    if rolling_back(resource, spec, firing):
        return RolloutReads(config)  # pods do not matter to a rollback: no waiting on reads
    return RolloutReads(
        config,
        stable=await client.get("apps/v1", "Deployment", namespace, name),
        canary=await client.get("apps/v1", "Deployment", namespace, f"{name}-canary"),
    )


async def apply_decision(
    client: KubeClient,
    resource: dict[str, Any],
    settings: OperatorSettings,
    decision: Decision,
    on_action: Callable[[Action], None],
    thorough: bool,
) -> Observation:
    """Render and apply every child, remove those the spec no longer asks for, and
    say what came of it. Children the spec no longer asks for are looked for among
    those the last status listed; ``thorough`` (a resume) looks for every kind.
    """
    meta = resource["metadata"]
    namespace, name = meta.get("namespace", "default"), meta["name"]
    seen, spec, placement = decision.seen, decision.spec, decision.placement
    assert spec is not None  # only a valid resource is applied
    assert placement is not None

    manifests = render(resource, settings, placement)
    prefetched: dict[tuple[str, str], dict[str, Any] | None] = {}
    if seen.rollout is not None and seen.rollout.changed:
        # The new state is stored before any child moves: a restart resumes from it.
        store = client.merge_patch(
            f"{GROUP}/{VERSION}", KIND, namespace, name, {"status": seen.rollout.status()}, "status"
        )
        urgent = [m for m in manifests if _carries_weight(m)] if seen.rollout.rolled_back else []
        # A rollback reads what carries the weight while the state is being stored.
        _, *found = await asyncio.gather(
            store,
            *(
                client.get(m["apiVersion"], m["kind"], namespace, m["metadata"]["name"])
                for m in urgent
            ),
        )
        prefetched = {
            (m["kind"], m["metadata"]["name"]): live for m, live in zip(urgent, found, strict=True)
        }
    if seen.rollout is not None and seen.rollout.rolled_back:
        # Traffic off the canary before anything else: routes, then the canary's pods.
        manifests.sort(key=_rollback_order)
    weights = [i for i, m in enumerate(manifests) if _carries_weight(m)]
    last_status = resource.get("status") or {}
    new = not last_status
    # A spec whose children were not all applied yet (new, or stalled since): every
    # child is applied, changed or not, so that what the old spec asked for and the
    # new one does not is removed.
    respecified = not new and last_status.get("appliedGeneration") != meta.get("generation")
    applied: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for index, manifest in enumerate(manifests):
            key = (manifest["kind"], manifest["metadata"]["name"])
            # Without a canary the stable Deployment's replicas may be an HPA's;
            # with one, the traffic router sets them and nobody else may.
            scalable = key == ("Deployment", name) and not spec.canary
            read = (prefetched[key],) if key in prefetched else ()
            action, live = await apply(
                client,
                resource,
                manifest,
                *read,
                create_first=new,
                scalable=scalable,
                always=respecified,
            )
            applied[manifest["kind"], manifest["metadata"]["name"]] = live
            if action is not None:
                on_action(action)
            if weights and index == weights[-1]:
                seen.traffic_applied = time.monotonic()
    except NotOwnedError as error:
        seen.problems.append(f"metadata.name: {error.message}")
        return seen
    if seen.rollout is not None and seen.rollout.acted_on:
        await client.merge_patch(
            f"{GROUP}/{VERSION}",
            KIND,
            namespace,
            name,
            {"metadata": {"annotations": dict.fromkeys(seen.rollout.acted_on)}},
        )
    listed = last_status.get("children")
    # A status without the list (written by an older operator, or edited) says
    # nothing of what exists: look for every kind. No status at all is a new
    # HardenedService, with nothing of its own to find yet.
    thorough = thorough or (not new and not isinstance(listed, list))
    known = {(c.get("kind"), c.get("name")) for c in listed or [] if isinstance(c, dict)}
    rendered = {(m["apiVersion"], m["kind"], m["metadata"]["name"]) for m in manifests}
    for api_version, kind, suffix in OPTIONAL_KINDS:
        child = name + suffix
        if (api_version, kind, child) in rendered or not (thorough or (kind, child) in known):
            continue
        stale = await client.get(api_version, kind, namespace, child)
        if stale is not None and _owned_by(stale, resource):
            await client.delete(api_version, kind, namespace, child)
            on_action(Action("deleted", kind, child))

    # Backup CronJobs of sources no longer in the spec.
    if thorough or any(kind == "CronJob" for kind, _ in known):
        for job in await client.list("batch/v1", "CronJob", namespace, f"{OWNER_LABEL}={name}"):
            child = job["metadata"]["name"]
            if ("batch/v1", "CronJob", child) not in rendered and _owned_by(job, resource):
                await client.delete("batch/v1", "CronJob", namespace, child)
                on_action(Action("deleted", "CronJob", child))
    seen.backups = [
        BackupStatus(
            source=source,
            **backup_status(applied["CronJob", backup_job_name(name, source)]).model_dump(),
            last_drill=(
                backup_status(applied["CronJob", drill])
                if ("CronJob", drill := drill_job_name(name, source)) in applied
                else None
            ),
        )
        for source in (s.name for s in (spec.backup.sources if spec.backup else []))
    ]

    deployment = applied["Deployment", name]
    seen.workload_ready, seen.workload_message = deployment_ready(deployment)
    if spec.canary and seen.workload_ready:
        seen.workload_message += " (stable)"
    seen.children = [
        Child(
            kind=m["kind"],
            name=m["metadata"]["name"],
            ready=(
                seen.workload_ready
                if m["kind"] == "Deployment" and m["metadata"]["name"] == name
                else None
            ),
        )
        for m in manifests
    ]
    return seen
