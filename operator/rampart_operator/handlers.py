"""kopf handlers: thin, each says what a failure means, all logic elsewhere.

A HardenedService is reconciled when created, changed or resumed; at once when
one of its children is deleted or edited so that it no longer matches (the
children are watched, as controller-runtime's ``Owns`` does); and on a timer,
``drift_interval``, as a safety net for missed events and for what is not a
child (a Secret that appears). One lock per object keeps these from
running into each other.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
from collections.abc import Callable
from time import monotonic
from typing import Any

import kopf

from .crd import GROUP, KIND, PLURAL, VERSION
from .events import post_event
from .kube import ApiError, KubeClient
from .metrics import OperatorMetrics
from .reconcile import Action, contains, reconcile
from .render import render
from .render.names import MANAGED_BY, OWNER_LABEL
from .settings import OperatorSettings, mode_for_server
from .status import Observation, compute_status
from .validation import validate

__all__ = ["Runtime", "register"]

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
)
Login = Callable[..., kopf.ConnectionInfo | None]


class Runtime:
    """What the handlers share: settings, the API client, metrics and per-object locks."""

    def __init__(self, settings: OperatorSettings, metrics: OperatorMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or OperatorMetrics()
        self.connection: kopf.ConnectionInfo | None = None
        self._client: KubeClient | None = None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            if self.connection is None:
                raise kopf.TemporaryError("not logged in yet", delay=1)
            self._client = KubeClient(self.connection)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def drifted(self, owner: dict[str, Any], child: dict[str, Any]) -> bool:
        """Whether a child no longer has what the owner's spec renders for it."""
        if validate(owner):
            return False  # a stalled owner is left alone; the timer looks again
        wanted = {(m["kind"], m["metadata"]["name"]): m for m in render(owner, self.settings)}
        desired = wanted.get((child.get("kind", ""), child["metadata"]["name"]))
        return desired is not None and not contains(child, desired)

    async def reconcile(self, body: dict[str, Any]) -> dict[str, Any]:
        """Reconcile one HardenedService and return its new status."""
        meta = body["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        lock = self._locks.setdefault(key, asyncio.Lock())
        actions: list[Action] = []
        async with lock:
            if self.settings.sidecar_mode == "auto":
                mode = mode_for_server(await self.client.version())
                self.settings = dataclasses.replace(self.settings, sidecar_mode=mode)
                log.info("sidecar mode %s for this cluster", mode)
            started = monotonic()
            try:
                seen = await reconcile(self.client, body, self.settings, actions.append)
            except ApiError as error:
                if error.transient:
                    self.metrics.reconciliations.labels("error").inc()
                    raise kopf.TemporaryError(f"API: {error}", delay=2) from error
                seen = Observation(meta.get("generation"), problems=[f"API: {error}"])
            finally:
                self.metrics.duration.observe(monotonic() - started)
        for action in actions:
            self.metrics.changes.labels(action.verb, action.kind).inc()
            await post_event(
                self.client,
                body,
                "Normal",
                action.verb.capitalize(),
                f"{action.verb} {action.kind} {action.name}",
            )
        previous = body.get("status") or {}
        status = compute_status(seen, previous)
        if seen.problems:
            self.metrics.reconciliations.labels("stalled").inc()
            was = {c.get("type"): c for c in previous.get("conditions", [])}.get("Stalled", {})
            message = "; ".join(seen.problems)
            if was.get("status") != "True" or was.get("message") != message:
                await post_event(self.client, body, "Warning", "Stalled", message)
        else:
            self.metrics.reconciliations.labels("applied").inc()
        return status


def _raw(body: kopf.Body) -> dict[str, Any]:
    return {key: copy.deepcopy(value) for key, value in body.items()}


def register(registry: kopf.OperatorRegistry, runtime: Runtime, login: Login | None = None) -> None:
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

    @kopf.on.login(registry=registry)
    def authenticate(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if login is not None:
            info = login(**kwargs)
        else:
            info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        runtime.connection = info
        return info

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    async def changed(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(await runtime.reconcile(_raw(body)))

    @kopf.timer(
        GROUP,
        VERSION,
        PLURAL,
        interval=runtime.settings.drift_interval,
        initial_delay=runtime.settings.drift_interval,
        registry=registry,
    )
    async def drift(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status.update(await runtime.reconcile(_raw(body)))

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
            if event["type"] == "MODIFIED" and not runtime.drifted(owner, child):
                return  # most often the operator's own write coming back
            status = await runtime.reconcile(owner)
            await runtime.client.merge_patch(
                f"{GROUP}/{VERSION}", KIND, namespace, owner_name, {"status": status}, "status"
            )
