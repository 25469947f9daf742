"""kopf handlers: they only register, each saying when the controller is called
and what a failure means; all else is the controller's (controller.py).

A HardenedService is reconciled when created, changed or resumed; at once when
one of its children is deleted or edited so that it no longer matches (the
children are watched, as controller-runtime's ``Owns`` does); and on a timer,
``drift_interval``, as a safety net for missed events and for what is not a
child (a Secret that appears). The controller's lock per object keeps these
from running into each other.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import kopf
from pydantic import ValidationError

from .api import parse_spec
from .canary import Policy, Rollout
from .controller import Runtime
from .crd import GROUP, KIND, PLURAL, VERSION
from .readiness import deployment_ready
from .render.names import MANAGED_BY, OWNER_LABEL

__all__ = ["CHILD_RESOURCES", "drift_delay", "register", "rollout_active"]

log = logging.getLogger("rampart.operator")

CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("monitoring.coreos.com", "v1", "prometheusrules"),
    ("monitoring.coreos.com", "v1", "podmonitors"),
    ("monitoring.coreos.com", "v1", "servicemonitors"),
    ("batch", "v1", "cronjobs"),
    ("gateway.networking.k8s.io", "v1", "httproutes"),
    ("networking.k8s.io", "v1", "ingresses"),
)
Login = Callable[..., kopf.ConnectionInfo | None]


def readiness_moved(owner: dict[str, Any], deployment: dict[str, Any]) -> bool:
    """Whether a Deployment's readiness differs from what the owner's status last saw."""
    status = owner.get("status") or {}
    name = deployment["metadata"]["name"]
    ready = deployment_ready(deployment)[0]
    if name == owner["metadata"]["name"]:
        listed = {c.get("name"): c.get("ready") for c in status.get("children") or []}
        return listed.get(name) != ready
    rollout = Rollout.from_status(status.get("canary"))
    # The canary: worth a look only when a step waits for these pods and they are up.
    return (
        ready
        and rollout is not None
        and rollout.phase == "Progressing"
        and rollout.step_started is None
    )


def drift_delay(interval: float) -> Callable[..., float]:
    """When an object's first drift check comes: between one and two intervals after
    the operator sees it, at a point fixed by its uid.

    Without the spread, a fleet found at start-up would be re-read all at once,
    every interval: 1,000 reconciles in one burst against the API server.
    """

    def delay(uid: str | None = None, **_: Any) -> float:
        digest = hashlib.sha256((uid or "").encode()).digest()
        return interval * (1 + int.from_bytes(digest[:8], "big") / 2**64)

    return delay


def rollout_active(body: kopf.Body, clock: Callable[[], float] = time.time) -> bool:
    """Whether a HardenedService needs its rollout looked at on every tick."""
    rollout = Rollout.from_status(dict((body.get("status") or {}).get("canary") or {}))
    if not (body.get("spec") or {}).get("canary") or rollout is None:
        return False
    if rollout.active:
        return True
    # Within the bake window an alert may still roll a promotion back.
    try:
        canary = parse_spec(dict(body)).canary
    except ValidationError:
        return False  # an invalid spec is stalled, not rolled out
    if canary is None:
        return False
    policy = Policy.from_spec(canary)
    return rollout.promoted_at is not None and clock() - rollout.promoted_at <= policy.bake_window


def register(registry: kopf.OperatorRegistry, runtime: Runtime, login: Login | None = None) -> None:  # noqa: C901 - one small closure per kopf handler, over the runtime
    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="rampart.dev"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="rampart.dev", key="last-handled-configuration"
        )
        # kopf posts only handler failures as Events; the operator posts its own.
        settings.posting.level = logging.ERROR
        if runtime.settings.metrics_port:
            runtime.metrics.serve(runtime.settings.metrics_port)
        await runtime.start_alerts()
        runtime.spawn(runtime.start_admission())

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await runtime.stop_alerts()
        await runtime.stop_admission()

    @kopf.on.login(registry=registry)
    async def authenticate(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if login is not None:
            info = login(**kwargs)
        else:
            info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        runtime.connection = info
        if info is not None:
            runtime.logged_in.set()
        return info

    for plural in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):

        @kopf.on.event(
            "admissionregistration.k8s.io",
            "v1",
            plural,
            registry=registry,
            id=f"ca-bundle-{plural}",
            when=lambda name, **_: name == runtime.settings.webhook_configuration,
        )
        async def webhook_configuration_changed(**_: Any) -> None:
            # A `helm upgrade` re-applies the configuration without caBundle.
            if runtime.admission is not None:
                await runtime.admission.keeper.sync_ca_bundle()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    async def resumed(name: str, namespace: str | None, **_: Any) -> None:
        await runtime.reconcile_named(namespace or "default", name, thorough=True)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def changed(name: str, namespace: str | None, **_: Any) -> None:
        await runtime.reconcile_named(namespace or "default", name)

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=runtime.settings.drift_interval,
        initial_delay=drift_delay(runtime.settings.drift_interval),
        registry=registry,
    )
    async def drift(name: str, namespace: str | None, **_: Any) -> None:
        # Not thorough: the start-up looked for every kind, and the status lists what
        # was created since; a sweep of every kind would be 9 more reads per check.
        await runtime.reconcile_named(namespace or "default", name)

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=runtime.settings.rollout_tick,
        when=lambda body, **_: rollout_active(body, runtime.clock),
        registry=registry,
    )
    async def rollout(name: str, namespace: str | None, **_: Any) -> None:
        await runtime.tick(namespace or "default", name)

    for group, version, plural in CHILD_RESOURCES:

        @kopf.on.event(
            group,
            version,
            plural,
            registry=registry,
            id=f"restore-{plural}",
            labels={"app.kubernetes.io/managed-by": MANAGED_BY},
        )
        async def child_event(event: kopf.RawEvent, **_: Any) -> None:
            if event["type"] not in ("DELETED", "MODIFIED"):
                return
            child: dict[str, Any] = dict(event["object"])
            meta = child.get("metadata", {})
            owner_name = meta.get("labels", {}).get(OWNER_LABEL)
            if not owner_name:
                return
            namespace = meta.get("namespace")
            owner = await runtime.client.get(f"{GROUP}/{VERSION}", KIND, namespace, owner_name)
            if owner is None or owner.get("metadata", {}).get("deletionTimestamp"):
                return  # the owner is going too: garbage collection, not drift
            if event["type"] == "DELETED" or runtime.drifted(owner, child):
                await runtime.reconcile_named(namespace, owner_name)
            elif child.get("kind") == "Deployment" and readiness_moved(owner, child):
                # Pods came up or went: the status says so now, and a rollout
                # waiting for its canary moves on without waiting for its tick.
                canary = meta.get("name") != owner_name
                await runtime.reconcile_named(namespace, owner_name, rollout_only=canary)
            # Otherwise, most often the operator's own write coming back.
