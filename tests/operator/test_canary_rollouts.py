"""Canary rollouts against the kmock emulator, with real parts where users have them.

The promotion and the rollback by analysis run on the real API server
(e2e/test_canaries.py); here stay the cases kmock serves as well or better:
the in-process alert-to-rollback histogram, the Alertmanager poller, a
restarted operator, the CLI, and the Gateway API and ingress-nginx routers.
The operator runs against the kmock emulator; the canary's "pods" are a real
sidecar process in front of a test upstream whose error rate the test sets;
a real Prometheus scrapes that sidecar (with the labels the PodMonitor would
give it) and a real Alertmanager routes alerts to the operator's webhook.
kmock has no Deployment controller: ``DeploymentController`` plays its part,
marking every Deployment's replicas available as soon as it sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
import pytest

from rampart_operator.settings import OperatorSettings
from tests.conftest import free_port
from tests.monitoring import CANARY_SERVER_ERRORS, Alertmanager, Prometheus
from tests.operator.conftest import HSVC, eventually, kubeconfig, running_operator
from tests.operator.test_operator_kmock import NS, api, hardened, obj, status
from tests.operator.test_rollout_parts import PRIMARY_INGRESS

pytestmark = pytest.mark.integration

NAME = "checkout"
TOKEN = "canary-test-token"
HSVC_PATH = f"/apis/rampart.dev/v1alpha1/namespaces/{NS}/hardenedservices/{NAME}"
DEPLOYMENTS = "apps/v1/deployments"


def settings(**overrides: Any) -> OperatorSettings:
    return OperatorSettings(
        **{
            "drift_interval": 60.0,
            "metrics_port": 0,
            "rollout_tick": 0.2,
            "alert_port": 0,
            "webhook_port": 0,
            **overrides,
        }
    )


def canary_spec(prometheus: str | None, steps: list[dict[str, Any]]) -> dict[str, Any]:
    canary: dict[str, Any] = {"steps": steps, "bakeWindow": "0s"}
    if prometheus:
        canary["analysis"] = {
            "interval": "1s",
            "window": "4s",
            "failureLimit": 2,
            "progressDeadline": "60s",
            "minRequests": 5,
            "prometheus": {"url": prometheus},
            "thresholds": {"errorRate": 0.05, "latencyP95": "500ms"},
        }
    return canary


class DeploymentController:
    """Marks each Deployment's replicas updated and available, as the real controller would."""

    def __init__(self, cluster: kmock.KubernetesEmulator) -> None:
        self.cluster = cluster

    async def run(self) -> None:
        while True:
            for key, found in list(self.cluster.objects.items()):
                if key[0].plural != "deployments" or found.deleted:
                    continue
                live = dict(found.raw)
                wanted = live.get("spec", {}).get("replicas", 1)
                if (live.get("status") or {}).get("availableReplicas") != wanted:
                    path = f"/apis/apps/v1/namespaces/{NS}/deployments/{live['metadata']['name']}"
                    counts = ("replicas", "updatedReplicas", "availableReplicas", "readyReplicas")
                    await api(
                        self.cluster, "PATCH", path, {"status": dict.fromkeys(counts, wanted)}
                    )
            await asyncio.sleep(0.05)


class Traffic:
    """Requests through the canary's sidecar, one after another, until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url + "/app"
        self.sent = 0

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while self.sent < 200_000:
                async with session.get(self.url) as response:
                    await response.read()
                self.sent += 1
                await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def background(*workers: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def canary_sidecar_target(sidecar: Any) -> dict[str, dict[str, str]]:
    # The labels the PodMonitor's relabelings give a canary pod's series.
    labels = {"namespace": NS, "hardenedservice": NAME, "track": "canary"}
    return {f"127.0.0.1:{sidecar.admin_port}": labels}


def deployment(cluster: kmock.KubernetesEmulator, name: str) -> dict[str, Any]:
    found = obj(cluster, DEPLOYMENTS, name)
    assert found is not None, name
    return found


def app_image(live: dict[str, Any]) -> str:
    containers = live["spec"]["template"]["spec"]["containers"]
    return str(next(c for c in containers if c["name"] == "app")["image"])


def events(cluster: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    return [
        dict(o.raw)
        for key, o in cluster.objects.items()
        if key[0].plural == "events" and not o.deleted
    ]


def reasons(cluster: kmock.KubernetesEmulator) -> list[str]:
    return [e["reason"] for e in events(cluster)]


async def start_rollout(cluster: kmock.KubernetesEmulator, canary: dict[str, Any]) -> None:
    """Create the service at version 1, let it settle, then ask for version 2."""
    cluster.objects[HSVC, NS, NAME] = hardened(NAME, replicas=4, canary=canary)
    await eventually(lambda: status(cluster).get("phase") == "Healthy", timeout=15)
    assert status(cluster)["canary"]["phase"] == "Initialized"
    assert deployment(cluster, f"{NAME}-canary")["spec"]["replicas"] == 0
    patch = {"spec": {"canary": {"image": "ghcr.io/acme/checkout:2"}}}
    assert await api(cluster, "PATCH", HSVC_PATH, patch) == 200


async def test_a_firing_alert_rolls_the_canary_back_through_the_webhook(
    cluster, upstream, start_sidecar, tmp_path
):
    sidecar = start_sidecar({}, upstream.url)
    port = free_port()
    alertmanager = Alertmanager(tmp_path, f"http://127.0.0.1:{port}/alertmanager", TOKEN)
    prometheus = Prometheus(
        tmp_path,
        canary_sidecar_target(sidecar),
        rules=[{"name": "test", "rules": [CANARY_SERVER_ERRORS]}],
        alertmanager=alertmanager.url,
    )
    steps = [{"weight": 25, "pause": "10m"}, {"weight": 100}]  # only an alert can end it
    operator_settings = settings(alert_port=port, alert_token=TOKEN, alert_host="127.0.0.1")
    try:
        async with (
            running_operator(cluster, operator_settings) as runtime,
            background(DeploymentController(cluster), Traffic(sidecar.url)),
        ):
            await start_rollout(cluster, canary_spec(None, steps))
            await eventually(lambda: status(cluster)["canary"]["weight"] == 25, timeout=15)
            upstream.error_rate = 0.5  # the canary starts failing: Prometheus sees, alerts
            await eventually(lambda: status(cluster)["canary"]["phase"] == "RolledBack", timeout=30)
            final = status(cluster)

            def rollbacks_timed() -> list[Any]:
                samples = runtime.metrics.alert_to_rollback.collect()[0].samples
                return [s.value for s in samples if s.name.endswith(("_count", "_sum"))]

            count, total = await eventually(lambda: rollbacks_timed()[0] and rollbacks_timed())
    finally:
        prometheus.stop()
        alertmanager.stop()
    assert "alert firing: CanaryServerErrors" in final["canary"]["message"]
    assert final["canary"]["weight"] == 0
    assert deployment(cluster, f"{NAME}-canary")["spec"]["replicas"] == 0
    # The rollback was timed from the webhook (no analysis, no polling, a 10-minute
    # pause: nothing else could have ended it). bench/rollback_bench.py measures how fast.
    assert count == 1
    assert total > 0


async def test_polling_alertmanager_catches_alerts_whose_webhook_was_lost(cluster, tmp_path):
    alertmanager = Alertmanager(tmp_path)  # no webhook at all: only polling can see alerts
    steps = [{"weight": 50, "pause": "10m"}, {"weight": 100}]
    operator_settings = settings(alertmanager_url=alertmanager.url, alert_poll_interval=0.3)
    try:
        async with (
            running_operator(cluster, operator_settings) as runtime,
            background(DeploymentController(cluster)),
        ):
            await start_rollout(cluster, canary_spec(None, steps))
            await eventually(lambda: status(cluster)["canary"]["weight"] == 50, timeout=15)
            # Someone else's alert and one for another service change nothing.
            alertmanager.post_alert({"alertname": "DiskFull", "namespace": NS})
            alertmanager.post_alert(
                {"alertname": "Other", "namespace": NS, "hardenedservice": "cart"}
            )
            # Once a poll has seen them, none is taken for this service's.
            await eventually(lambda: runtime.alerts.firing(NS, "cart") == ("Other",))
            assert runtime.alerts.firing(NS, NAME) == ()
            assert status(cluster)["canary"]["phase"] == "Progressing"
            alertmanager.post_alert(
                {"alertname": "RampartHighErrorRate", "namespace": NS, "hardenedservice": NAME}
            )
            await eventually(lambda: status(cluster)["canary"]["phase"] == "RolledBack", timeout=10)
    finally:
        alertmanager.stop()
    assert "alert firing: RampartHighErrorRate" in status(cluster)["canary"]["message"]


async def test_a_restarted_operator_carries_on_and_the_cli_promotes(cluster, tmp_path):
    steps = [{"weight": 25, "pause": "1s"}, {"weight": 50, "pause": "10m"}, {"weight": 100}]
    async with background(DeploymentController(cluster)):
        async with running_operator(cluster, settings()):
            await start_rollout(cluster, canary_spec(None, steps))
            await eventually(lambda: status(cluster)["canary"]["weight"] == 50, timeout=15)
        stored = status(cluster)["canary"]
        assert (stored["step"], stored["weight"]) == (1, 50)
        replicas = deployment(cluster, f"{NAME}-canary")["spec"]["replicas"]
        assert replicas == 2

        async with running_operator(cluster, settings()) as runtime:
            # A new process: it must neither go back to 25% nor skip the 10-minute pause.
            # Wait until its resume has reconciled the service (where a wrong step would show).
            registry = runtime.metrics.registry
            await eventually(
                lambda: registry.get_sample_value(
                    "rampart_operator_reconciliations_total", {"result": "applied"}
                )
            )
            resumed = status(cluster)["canary"]
            assert (resumed["phase"], resumed["step"], resumed["weight"]) == ("Progressing", 1, 50)
            assert resumed["stepStarted"] == stored["stepStarted"]
            assert weight_messages(cluster) == [
                "step 1/3: 25% to the canary",
                "step 2/3: 50% to the canary",
            ]
            # Manual promotion through the CLI, which only sets an annotation.
            env = {**os.environ, "KUBECONFIG": str(kubeconfig(cluster, tmp_path))}
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "rampart_operator", "promote", NAME],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
            await eventually(lambda: status(cluster)["canary"]["phase"] == "Succeeded", timeout=15)
            # The operator removed the annotation once it acted on it.
            await eventually(
                lambda: (
                    "rampart.dev/promote"
                    not in (obj(cluster, HSVC, NAME)["metadata"].get("annotations") or {})
                )
            )
    assert "promoted by the rampart.dev/promote annotation" in " ".join(
        e["message"] for e in events(cluster)
    )
    assert app_image(deployment(cluster, NAME)) == "ghcr.io/acme/checkout:2"


def weight_messages(cluster: kmock.KubernetesEmulator) -> list[str]:
    return [e["message"] for e in events(cluster) if e["reason"] == "CanaryWeight"]


async def test_cli_names_a_missing_service(cluster, tmp_path):
    env = {**os.environ, "KUBECONFIG": str(kubeconfig(cluster, tmp_path))}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "rampart_operator", "abort", "nothing-here"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "HardenedService shop/nothing-here: not found" in done.stderr


def route_weights(cluster: kmock.KubernetesEmulator) -> list[tuple[str, int]]:
    route = obj(cluster, "gateway.networking.k8s.io/v1/httproutes", NAME)
    assert route is not None
    return [(r["name"], r["weight"]) for r in route["spec"]["rules"][0]["backendRefs"]]


async def test_gateway_api_weights_move_on_the_httproute_and_abort_sets_zero(cluster):
    gateway = {"parentRefs": [{"name": "public"}], "hostnames": ["shop.example"]}
    canary = {
        **canary_spec(None, [{"weight": 30, "pause": "10m"}, {"weight": 100}]),
        "traffic": {"router": "gatewayAPI", "gatewayAPI": gateway},
    }
    async with running_operator(cluster, settings()), background(DeploymentController(cluster)):
        await start_rollout(cluster, canary)
        await eventually(lambda: route_weights(cluster) == [(NAME, 70), (f"{NAME}-canary", 30)])
        # The weighing router keeps every stable pod; the canary has its share.
        assert deployment(cluster, NAME)["spec"]["replicas"] == 4
        assert deployment(cluster, f"{NAME}-canary")["spec"]["replicas"] == 2
        selector = obj(cluster, "v1/services", NAME)["spec"]["selector"]
        assert selector["rampart.dev/track"] == "stable"
        abort = {"metadata": {"annotations": {"rampart.dev/abort": "now"}}}
        assert await api(cluster, "PATCH", HSVC_PATH, abort) == 200
        await eventually(lambda: route_weights(cluster) == [(NAME, 100), (f"{NAME}-canary", 0)])
        await eventually(lambda: status(cluster)["canary"]["phase"] == "RolledBack")
        await eventually(
            lambda: (
                "rampart.dev/abort"
                not in (obj(cluster, HSVC, NAME)["metadata"].get("annotations") or {})
            )
        )
    assert "aborted by the rampart.dev/abort annotation" in status(cluster)["canary"]["message"]


async def test_ingress_nginx_canary_ingress_follows_the_weight_and_promotion(cluster):
    users_ingress = copy.deepcopy(PRIMARY_INGRESS)
    users_ingress["metadata"]["resourceVersion"] = "1"
    cluster.objects["networking.k8s.io/v1/ingresses", NS, "shop"] = users_ingress
    canary = {
        **canary_spec(None, [{"weight": 20, "pause": "10m"}, {"weight": 100}]),
        "traffic": {"router": "ingressNginx", "ingressNginx": {"ingress": "shop"}},
    }

    def canary_weight() -> str | None:
        ingress = obj(cluster, "networking.k8s.io/v1/ingresses", f"{NAME}-canary")
        return (
            (ingress or {})
            .get("metadata", {})
            .get("annotations", {})
            .get("nginx.ingress.kubernetes.io/canary-weight")
        )

    async with running_operator(cluster, settings()), background(DeploymentController(cluster)):
        await start_rollout(cluster, canary)
        await eventually(lambda: canary_weight() == "20")
        ingress = obj(cluster, "networking.k8s.io/v1/ingresses", f"{NAME}-canary")
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"] == f"{NAME}-canary"
        promote = {"metadata": {"annotations": {"rampart.dev/promote": "now"}}}
        assert await api(cluster, "PATCH", HSVC_PATH, promote) == 200
        await eventually(lambda: status(cluster)["canary"]["phase"] == "Succeeded")
        await eventually(lambda: canary_weight() == "0")
    assert app_image(deployment(cluster, NAME)) == "ghcr.io/acme/checkout:2"
    # The user's own Ingress is never touched.
    mine = obj(cluster, "networking.k8s.io/v1/ingresses", "shop")
    assert mine["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == NAME


async def test_ingress_nginx_without_the_users_ingress_stalls_with_the_field(cluster):
    canary = {
        **canary_spec(None, [{"weight": 20}]),
        "traffic": {"router": "ingressNginx", "ingressNginx": {"ingress": "missing"}},
    }
    async with running_operator(cluster, settings()):
        cluster.objects[HSVC, NS, NAME] = hardened(NAME, replicas=4, canary=canary)
        await eventually(lambda: status(cluster).get("phase") == "Failed")
    stalled = {c["type"]: c for c in status(cluster)["conditions"]}["Stalled"]
    assert stalled["status"] == "True"
    assert (
        "spec.canary.traffic.ingressNginx.ingress: Ingress missing not found" in stalled["message"]
    )
    assert obj(cluster, DEPLOYMENTS, NAME) is None  # nothing applied
