"""The controller: one Runtime per operator process, owning what outlives a handler call.

It holds the Kubernetes client and the HTTP session, a lock per
HardenedService (a create, a drift check, a child's event and a rollout tick
never run into each other), the alert store, receiver and poller, the
admission webhooks, and the status write at the end of each reconcile.
kopf's handlers (handlers.py) only call into it; what it tells people goes
through reporting.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from time import monotonic
from typing import Any

import aiohttp
import kopf
from aiohttp import web

from .admission.service import Admission
from .alertmanager import AlertPoller, AlertStore, receiver_app
from .alertproof import proof_key
from .analysis import analyze
from .analysis.prometheus import PrometheusProvider
from .analysis.queries import checks_for
from .api import parse_spec
from .canary import Policy, Rollout, analysis_due
from .crd import GROUP, KIND, VERSION
from .decision import Decision
from .kube import ApiError, KubeClient
from .metrics import OperatorMetrics
from .reconcile import Action, apply_decision, contains, leave_scale, look
from .render import render
from .reporting import Reporter
from .rollout import Analysis, placement_from_status
from .settings import OperatorSettings, mode_for_server
from .status import Observation, compute_status
from .validation import limits_of, validate

__all__ = ["Runtime"]

log = logging.getLogger("rampart.operator")


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
        self.reporter = Reporter(self.metrics, self.alerts.firing)
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
        spec = parse_spec(owner)
        placement = placement_from_status(spec, owner.get("status"))
        rendered = render(owner, self.settings, placement)
        wanted = {(m["kind"], m["metadata"]["name"]): m for m in rendered}
        desired = wanted.get((child.get("kind", ""), child["metadata"]["name"]))
        if desired is not None and child.get("kind") == "Ingress":
            return False  # its rules copy the user's Ingress, which render cannot see
        if desired is not None and not spec.canary:
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
        spec = parse_spec(body)
        rollout = Rollout.from_status((body.get("status") or {}).get("canary"))
        analysis = None
        if spec.canary and rollout is not None:
            policy = Policy.from_spec(spec.canary)
            now = self.clock()
            settings = spec.canary.analysis
            if analysis_due(policy, rollout, now) and settings.prometheus is not None:
                provider = PrometheusProvider(self.http, settings.prometheus.url)
                verdict = await analyze(provider, namespace, name, settings, now)
                analysis = Analysis(verdict, rollout.revision, rollout.step)
                for measured, value in verdict.values.items():
                    self.metrics.analysis.labels(namespace, name, measured).set(value)
                for check in checks_for(namespace, name, settings):
                    if check.max is not None:  # drawn beside the values on the dashboard
                        self.metrics.threshold.labels(namespace, name, check.name).set(check.max)
        # Most ticks find nothing to do: they find it out without the lock, which
        # an alert may need at that very moment.
        if (await self._decide(body, analysis)).moves:
            await self.reconcile_named(namespace, name, analysis=analysis, rollout_only=True)

    async def _decide(self, body: dict[str, Any], analysis: Analysis | None) -> Decision:
        meta = body["metadata"]
        firing = self.alerts.firing(meta.get("namespace", "default"), meta["name"])
        return await look(
            self.client, body, self.settings, firing=firing, analysis=analysis, now=self.clock()
        )

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
                decision = await self._decide(body, analysis)
                seen = decision.seen  # with problems, nothing is applied: the status says why
                idle = rollout_only and seen.rollout is not None and not decision.moves
                if idle:
                    seen.skipped = True  # a rollout's look that found nowhere to go
                elif not seen.problems:
                    seen = await apply_decision(
                        self.client, body, self.settings, decision, actions.append, thorough
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
        await self.reporter.report(self.client, body, seen, actions, previous, alerted)
        return status
