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
import dataclasses
import hashlib
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from time import monotonic
from typing import Any, get_args

import aiohttp
import kopf
from aiohttp import web

from .admission.service import Admission
from .alertmanager import AlertPoller, AlertStore, receiver_app
from .alertproof import proof_key
from .analysis import analyze
from .analysis.prometheus import PrometheusProvider
from .analysis.queries import checks_for
from .canary import Phase, Policy, Rollout, analysis_due
from .crd import GROUP, KIND, PLURAL, VERSION
from .events import post_event
from .kube import ApiError, KubeClient
from .metrics import OperatorMetrics
from .readiness import deployment_ready
from .reconcile import Action, contains, leave_scale, reconcile
from .render import render
from .render.names import MANAGED_BY, OWNER_LABEL
from .rollout import Analysis, placement_from_status
from .schema import apply_defaults
from .settings import OperatorSettings, mode_for_server
from .status import Observation, compute_status
from .validation import limits_of, validate

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
    ("gateway.networking.k8s.io", "v1", "httproutes"),
    ("networking.k8s.io", "v1", "ingresses"),
)
Login = Callable[..., kopf.ConnectionInfo | None]
ROLLOUT_ENDS = (
    ("Promoted", ""),
    *(("RolledBack", cause) for cause in ("alert", "analysis", "abort", "progressDeadline")),
)


class Runtime:
    """What the handlers share: settings, the API client, metrics, alerts and per-object locks.

    Every reconciliation of one HardenedService runs under its lock, starts
    from a fresh read of it and ends by writing its status, so a timer, a
    watch event and an alert never act on each other's stale picture.
    """

    def __init__(
        self,
        settings: OperatorSettings,
        metrics: OperatorMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self.alerts = AlertStore(proof_key(settings.alert_token))
        self.connection: kopf.ConnectionInfo | None = None
        self._client: KubeClient | None = None
        self._http: aiohttp.ClientSession | None = None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._alerted: dict[tuple[str, str], float] = {}  # monotonic time an alert arrived
        self._tasks: set[asyncio.Task[None]] = set()
        self._written: dict[tuple[str, str], dict[str, Any]] = {}  # as last written here
        self._receiver: web.AppRunner | None = None
        self.logged_in = asyncio.Event()
        self.admission: Admission | None = None
        self.admission_started = asyncio.Event()

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            if self.connection is None:
                raise kopf.TemporaryError("not logged in yet", delay=1)
            self._client = KubeClient(self.connection)
        return self._client

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
        if self._http is not None:
            await self._http.close()

    def drifted(self, owner: dict[str, Any], child: dict[str, Any]) -> bool:
        """Whether a child no longer has what the owner's spec renders for it."""
        if validate(owner):
            return False  # a stalled owner is left alone; the timer looks again
        spec = apply_defaults(owner)["spec"]
        placement = placement_from_status(spec, owner.get("status"))
        rendered = render(owner, self.settings, placement)
        wanted = {(m["kind"], m["metadata"]["name"]): m for m in rendered}
        desired = wanted.get((child.get("kind", ""), child["metadata"]["name"]))
        if desired is not None and child.get("kind") == "Ingress":
            return False  # its rules copy the user's Ingress, which render cannot see
        if desired is not None and not spec.get("canary"):
            desired = leave_scale(desired, child)  # replicas an HPA set are its own
        return desired is not None and not contains(child, desired)

    async def on_firing(self, keys: set[tuple[str, str]], received: float) -> None:
        """Alerts are firing for these HardenedServices: look at each now, not at the next tick."""
        self.metrics.alerts.inc(len(keys))
        for key in keys:
            self._alerted.setdefault(key, received)
            self.spawn(self._react(*key))

    async def _react(self, namespace: str, name: str) -> None:
        try:
            await self.reconcile_named(namespace, name, urgent=True)
        except (kopf.TemporaryError, ApiError) as error:
            # The alert stays in the store: the next rollout tick acts on it.
            log.warning(
                "%s/%s: acting on an alert failed (%s); retrying at the next tick",
                namespace,
                name,
                error,
            )

    async def start_alerts(self) -> None:
        """The webhook receiver (with a token) and the Alertmanager poller (with a URL)."""
        settings = self.settings
        if settings.alert_port and settings.alert_token and settings.alert_tls:
            self.spawn(self._serve_receiver_over_tls())
        elif settings.alert_port and settings.alert_token:
            await self._serve_receiver(None)
        elif settings.alert_port:
            log.warning("no RAMPART_ALERT_TOKEN: the Alertmanager webhook receiver is off")
        if not settings.alert_token:
            log.warning(
                "no RAMPART_ALERT_TOKEN: alerts are matched to HardenedServices by their "
                "namespace and hardenedservice labels alone, which any rule can set"
            )
        if settings.alertmanager_url:
            poller = AlertPoller(
                self.alerts,
                settings.alertmanager_url,
                settings.alert_poll_interval,
                self.on_firing,
                monotonic,
            )
            self.spawn(poller.run())

    async def _serve_receiver(self, context: ssl.SSLContext | None) -> None:
        settings = self.settings
        app = receiver_app(self.alerts, settings.alert_token, self.on_firing, monotonic)
        self._receiver = web.AppRunner(app, access_log=None)
        await self._receiver.setup()
        site = web.TCPSite(
            self._receiver, settings.alert_host, settings.alert_port, ssl_context=context
        )
        await site.start()
        log.info(
            "Alertmanager webhook receiver on port %d (%s)",
            settings.alert_port,
            "HTTPS, the webhook server's certificate" if context else "plain HTTP",
        )

    async def _serve_receiver_over_tls(self) -> None:
        """The receiver behind the webhook server's certificate, once it has one."""
        if not self.settings.webhook_port:
            log.error(
                "the Alertmanager webhook receiver is off: it serves HTTPS with the webhook "
                "server's certificate, and the webhook server is off "
                "(RAMPART_ALERT_TLS=false serves it over plain HTTP)"
            )
            return
        await self.admission_started.wait()
        assert self.admission is not None
        await self.admission.serving.wait()
        await self._serve_receiver(self.admission.context)

    async def stop_alerts(self) -> None:
        if self._receiver is not None:
            await self._receiver.cleanup()
            self._receiver = None

    async def _resolve_sidecar_mode(self) -> None:
        if self.settings.sidecar_mode == "auto":
            mode = mode_for_server(await self.client.version())
            self.settings = dataclasses.replace(self.settings, sidecar_mode=mode)
            log.info("sidecar mode %s for this cluster", mode)

    async def start_admission(self) -> None:
        """The webhook server, once logged in (its certificate lives in the cluster)."""
        if not self.settings.webhook_port:
            return
        await self.logged_in.wait()
        while True:
            try:
                await self._resolve_sidecar_mode()  # the sidecar injected depends on it
                break
            except ApiError as error:
                log.warning("admission webhooks wait for the API server's version (%s)", error)
                await asyncio.sleep(5)
        self.admission = Admission(self.settings, self.client, self.metrics)
        self.admission.start()
        self.admission_started.set()

    async def stop_admission(self) -> None:
        if self.admission is not None:
            await self.admission.stop()
            self.admission = None

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def tick(self, namespace: str, name: str) -> None:
        """A rollout's periodic look: analysis if due (outside the lock), then a reconcile."""
        body = await self.client.get(f"{GROUP}/{VERSION}", KIND, namespace, name)
        if body is None or validate(body, limits_of(self.settings)):
            return  # a refused analysis endpoint is never fetched
        spec = apply_defaults(body)["spec"]
        rollout = Rollout.from_status((body.get("status") or {}).get("canary"))
        analysis = None
        if spec.get("canary") and rollout is not None:
            policy = Policy.from_spec(spec["canary"])
            now = self.clock()
            if analysis_due(policy, rollout, now):
                settings = spec["canary"]["analysis"]
                provider = PrometheusProvider(self.http, settings["prometheus"]["url"])
                verdict = await analyze(provider, namespace, name, settings, now)
                analysis = Analysis(verdict, rollout.revision, rollout.step)
                for measured, value in verdict.values.items():
                    self.metrics.analysis.labels(namespace, name, measured).set(value)
                for check in checks_for(namespace, name, settings):
                    if check.max is not None:  # drawn beside the values on the dashboard
                        self.metrics.threshold.labels(namespace, name, check.name).set(check.max)
        # Most ticks find nothing to do: they find it out without the lock, which
        # an alert may need at that very moment.
        probe = await reconcile(
            self.client,
            body,
            self.settings,
            firing=self.alerts.firing(namespace, name),
            analysis=analysis,
            now=self.clock(),
            rollout_only=True,
            probe=True,
        )
        if not probe.skipped:
            await self.reconcile_named(namespace, name, analysis=analysis, rollout_only=True)

    async def reconcile_named(
        self,
        namespace: str,
        name: str,
        analysis: Analysis | None = None,
        rollout_only: bool = False,
        thorough: bool = False,
        urgent: bool = False,
    ) -> dict[str, Any] | None:
        """Reconcile one HardenedService, write its status and return it (None if it is gone).

        ``urgent`` (an alert) starts from the object as this operator last wrote
        it, when it has one, instead of reading it again: the operator is the only
        writer of the status, which is what a rollback decides on; a spec change
        since then brings its own reconciliation right after.
        """
        with self.metrics.in_progress.track_inprogress():  # the operator's queue, as it were
            return await self._reconcile_locked(
                (namespace, name), analysis, rollout_only, thorough, urgent
            )

    async def _reconcile_locked(
        self,
        key: tuple[str, str],
        analysis: Analysis | None,
        rollout_only: bool,
        thorough: bool,
        urgent: bool,
    ) -> dict[str, Any] | None:
        namespace, name = key
        lock = self._locks.setdefault(key, asyncio.Lock())
        actions: list[Action] = []
        async with lock:
            body = self._written.get(key) if urgent else None
            if body is None:
                body = await self.client.get(f"{GROUP}/{VERSION}", KIND, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self._alerted.pop(key, None)
                self._written.pop(key, None)
                return None
            await self._resolve_sidecar_mode()
            started = monotonic()
            alerted = self._alerted.pop(key, None)
            try:
                seen = await reconcile(
                    self.client,
                    body,
                    self.settings,
                    actions.append,
                    firing=self.alerts.firing(namespace, name),
                    analysis=analysis,
                    now=self.clock(),
                    rollout_only=rollout_only,
                    thorough=thorough,
                )
            except ApiError as error:
                self._written.pop(key, None)  # a status may have been half written
                if error.namespace_terminating:
                    # Its namespace is going, children first and the HardenedService
                    # with them: restoring a child now would only be refused.
                    log.info("%s/%s: namespace terminating, left alone", namespace, name)
                    return None
                if error.transient:
                    self.metrics.reconciliations.labels("error").inc()
                    raise kopf.TemporaryError(f"API: {error}", delay=2) from error
                seen = Observation(body["metadata"].get("generation"), problems=[f"API: {error}"])
            finally:
                self.metrics.duration.observe(monotonic() - started)
            if seen.skipped:
                if alerted is not None:
                    self._alerted.setdefault(key, alerted)
                return None
            previous = body.get("status") or {}
            status = compute_status(seen, previous)
            if all(previous.get(field) == value for field, value in status.items()):
                # Nothing to say that the status does not say already (most drift
                # checks): no write, and no watch event for every client.
                self._written[key] = body
            else:
                self._written[key] = await self.client.merge_patch(
                    f"{GROUP}/{VERSION}", KIND, namespace, name, {"status": status}, "status"
                )
        await self._report(body, seen, actions, previous, alerted)
        return status

    async def _report(
        self,
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
                ", ".join(self.alerts.firing(namespace, name)) or "no longer",
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
            await post_event(self.client, body, note.type, note.reason, note.message)
        # One Event per verb, naming every child: a new HardenedService is one
        # "Created" Event, not one write to the API server per child.
        done: dict[str, list[str]] = {}
        for action in actions:
            self.metrics.changes.labels(action.verb, action.kind).inc()
            done.setdefault(action.verb, []).append(f"{action.kind} {action.name}")
        for verb, children in done.items():
            message = f"{verb} {', '.join(children)}"
            await post_event(self.client, body, "Normal", verb.capitalize(), message)
        if seen.problems:
            self.metrics.reconciliations.labels("stalled").inc()
            was = {c.get("type"): c for c in previous.get("conditions", [])}.get("Stalled", {})
            message = "; ".join(seen.problems)
            if was.get("status") != "True" or was.get("message") != message:
                await post_event(self.client, body, "Warning", "Stalled", message)
        else:
            self.metrics.reconciliations.labels("applied").inc()


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
    spec = body.get("spec") or {}
    rollout = Rollout.from_status(dict((body.get("status") or {}).get("canary") or {}))
    if not spec.get("canary") or rollout is None:
        return False
    if rollout.active:
        return True
    # Within the bake window an alert may still roll a promotion back.
    policy = Policy.from_spec(apply_defaults(dict(body))["spec"]["canary"])
    return rollout.promoted_at is not None and clock() - rollout.promoted_at <= policy.bake_window


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
