"""Alerts from Alertmanager: a webhook receiver for speed, polling for what webhooks lose.

An alert is for a HardenedService when it carries ``namespace`` and
``hardenedservice`` labels and, once the operator has a token, the
``rampart_proof`` label the operator rendered for that service (every alert
Rampart renders does; users copy all three from their PrometheusRule onto
their own). An alert naming a service without its proof changes nothing: it
is another namespace's rule trying to roll this one back (alertproof.py).
``AlertStore`` keeps the firing ones per service.

- The receiver (``POST /alertmanager``) is what makes a rollback happen
  within a second: Alertmanager calls it as soon as a group fires, and it
  calls ``on_firing`` for every service with a newly firing alert. It wants
  ``Authorization: Bearer <token>``; anything else gets 401 and changes
  nothing. Alertmanager's config::

      receivers:
      - name: rampart
        webhook_configs:
        - url: http://rampart-operator.rampart:9443/alertmanager
          send_resolved: true
          http_config: {authorization: {credentials_file: /etc/rampart/token}}

- The poller reads ``/api/v2/alerts`` every few seconds and replaces the
  store's picture with Alertmanager's own, so a lost webhook (an operator
  restart, a network blip, a resolved notice never sent) costs at most one
  poll interval.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from .alertproof import PROOF_LABEL, proven

__all__ = ["AlertPoller", "AlertStore", "receiver_app"]

log = logging.getLogger("rampart.alerts")

Key = tuple[str, str]  # namespace, HardenedService name
OnFiring = Callable[[set[Key], float], Awaitable[None]]
MAX_BODY = 4 * 1024 * 1024


def _claimed(labels: object) -> Key | None:
    if not isinstance(labels, dict):
        return None
    namespace, name = labels.get("namespace"), labels.get("hardenedservice")
    if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
        return namespace, name
    return None


def _identity(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    return str(alert.get("fingerprint") or json.dumps(labels, sort_keys=True))


class AlertStore:
    """Firing alerts per HardenedService: alert identity → alert name.

    ``proof_key``: alerts count only with the proof this key gives their service.
    """

    def __init__(self, proof_key: bytes | None = None) -> None:
        self._firing: dict[Key, dict[str, str]] = {}
        self._proof_key = proof_key
        self._unproven: set[str] = set()  # identities already logged

    def _key(self, alert: dict[str, Any], labels: dict[str, Any]) -> Key | None:
        key = _claimed(labels)
        if key is None or proven(self._proof_key, *key, labels.get(PROOF_LABEL)):
            return key
        identity = _identity(alert)
        if identity not in self._unproven and len(self._unproven) < 10_000:
            self._unproven.add(identity)
            log.warning(
                "alert %s names %s/%s without that service's %s label: ignored",
                str(labels.get("alertname", "unnamed"))[:100],
                key[0][:63],
                key[1][:253],
                PROOF_LABEL,
            )
        return None

    def firing(self, namespace: str, name: str) -> tuple[str, ...]:
        return tuple(sorted(set(self._firing.get((namespace, name), {}).values())))

    def record(self, alerts: Iterable[dict[str, Any]]) -> set[Key]:
        """Apply webhook alerts (firing or resolved); the services with new firing ones."""
        fresh: set[Key] = set()
        for alert in alerts:
            labels = alert.get("labels") or {}
            key = self._key(alert, labels)
            if key is None:
                continue
            identity = _identity(alert)
            known = self._firing.setdefault(key, {})
            if alert.get("status") == "resolved":
                known.pop(identity, None)
            elif identity not in known:
                known[identity] = str(labels.get("alertname", "unnamed"))
                fresh.add(key)
        return fresh

    def replace(self, active: Iterable[dict[str, Any]]) -> set[Key]:
        """Take Alertmanager's list of active alerts as the whole truth."""
        before = {key: set(alerts) for key, alerts in self._firing.items()}
        snapshot: dict[Key, dict[str, str]] = {}
        for alert in active:
            labels = alert.get("labels") or {}
            key = self._key(alert, labels)
            if key is not None:
                name = str(labels.get("alertname", "unnamed"))
                snapshot.setdefault(key, {})[_identity(alert)] = name
        self._firing = snapshot
        return {key for key, alerts in snapshot.items() if set(alerts) - before.get(key, set())}


def receiver_app(
    store: AlertStore, token: str, on_firing: OnFiring, clock: Callable[[], float]
) -> web.Application:
    expected = f"Bearer {token}".encode()

    async def receive(request: web.Request) -> web.Response:
        received = clock()
        offered = request.headers.get("Authorization", "").encode()
        if not token or not hmac.compare_digest(offered, expected):
            return web.json_response(
                {"error": "a bearer token is required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="rampart"'},
            )
        try:
            payload = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "the body is not JSON"}, status=400)
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
            return web.json_response({"error": "expected Alertmanager's webhook body"}, status=400)
        fresh = store.record(alerts)
        if fresh:
            log.info("alerts firing for %s", ", ".join(f"{ns}/{n}" for ns, n in sorted(fresh)))
            await on_firing(fresh, received)
        return web.json_response({"accepted": len(alerts)})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/alertmanager", receive)
    return app


def _reason(error: Exception) -> str:
    """Why a poll failed, without the URL aiohttp puts in some errors (and its credentials)."""
    if isinstance(error, aiohttp.ClientResponseError):
        return f"HTTP {error.status} {error.message}"[:200]
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect ({error.os_error.strerror or type(error.os_error).__name__})"
    return type(error).__name__


class AlertPoller:
    def __init__(
        self,
        store: AlertStore,
        url: str,
        interval: float,
        on_firing: OnFiring,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._url = url.rstrip("/") + "/api/v2/alerts"
        # What logs show: the URL without credentials (user:password@, query).
        self._shown = str(URL(self._url).with_user(None).with_query(None).with_fragment(None))
        self._interval = interval
        self._on_firing = on_firing
        self._clock = clock
        self._failing = False

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        params = {"active": "true", "silenced": "false", "inhibited": "false"}
        try:
            async with session.get(
                self._url, params=params, timeout=aiohttp.ClientTimeout(total=self._interval)
            ) as response:
                response.raise_for_status()
                alerts = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            if not self._failing:
                log.warning("cannot poll Alertmanager at %s: %s", self._shown, _reason(error))
            self._failing = True
            return
        if self._failing:
            log.info("polling Alertmanager at %s again", self._shown)
        self._failing = False
        fresh = self._store.replace(a for a in alerts if isinstance(a, dict))
        if fresh:
            log.info(
                "polled alerts firing for %s", ", ".join(f"{ns}/{n}" for ns, n in sorted(fresh))
            )
            await self._on_firing(fresh, self._clock())

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                await self.poll_once(session)
                await asyncio.sleep(self._interval)
