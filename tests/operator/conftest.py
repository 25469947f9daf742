"""The operator in-process against the kmock Kubernetes emulator.

kmock has no controllers, no garbage collection, no server-side apply and no
resourceVersion conflicts: tests that need a Deployment's status set it
themselves, and the API errors a real server would give are injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest
import yaml

from rampart_operator.handlers import Runtime, register
from rampart_operator.settings import OperatorSettings
from tests.emulator import speed_up_matching

speed_up_matching()

HSVC = "rampart.dev/v1alpha1/hardenedservices"
VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}
RESOURCES = {
    HSVC: ("HardenedService", True, {"status"}),
    "apps/v1/deployments": ("Deployment", True, {"status"}),
    "v1/services": ("Service", True, set()),
    "v1/configmaps": ("ConfigMap", True, set()),
    "v1/secrets": ("Secret", True, set()),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True, set()),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True, set()),
    "monitoring.coreos.com/v1/prometheusrules": ("PrometheusRule", True, set()),
    "monitoring.coreos.com/v1/podmonitors": ("PodMonitor", True, set()),
    "monitoring.coreos.com/v1/servicemonitors": ("ServiceMonitor", True, set()),
    "batch/v1/cronjobs": ("CronJob", True, {"status"}),
    "gateway.networking.k8s.io/v1/httproutes": ("HTTPRoute", True, set()),
    "networking.k8s.io/v1/ingresses": ("Ingress", True, set()),
    "v1/events": ("Event", True, set()),
    "admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": (
        "MutatingWebhookConfiguration",
        False,
        set(),
    ),
    "admissionregistration.k8s.io/v1/validatingwebhookconfigurations": (
        "ValidatingWebhookConfiguration",
        False,
        set(),
    ),
    "v1/namespaces": ("Namespace", False, set()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, set()),
}


@pytest.fixture
def cluster(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    for key, (kind, namespaced, subresources) in RESOURCES.items():
        kmock.resources[key] = kmock_info(kind, namespaced, subresources)
    return kmock


def kmock_info(kind: str, namespaced: bool, subresources: set[str]) -> kmock.ResourceInfo:
    return kmock.ResourceInfo(
        kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources
    )


@pytest.fixture
async def operator(
    cluster: kmock.KubernetesEmulator, request: pytest.FixtureRequest
) -> AsyncIterator[Runtime]:
    """The operator, its drift timer ticking every 0.5 s unless a test marks another interval."""
    marker = request.node.get_closest_marker("drift_interval")
    interval = float(marker.args[0]) if marker else 0.5
    settings = OperatorSettings(
        drift_interval=interval, metrics_port=0, alert_port=0, webhook_port=0
    )
    async with running_operator(cluster, settings) as runtime:
        yield runtime


@contextlib.asynccontextmanager
async def running_operator(
    cluster: kmock.KubernetesEmulator, settings: OperatorSettings
) -> AsyncIterator[Runtime]:
    """The operator on an event loop of its own, in a thread; stopped on exit.

    On stop, kopf waits for and then cancels every task of the loop it runs
    in; on the test's loop that would include kmock's own server tasks.
    """
    runtime = Runtime(settings)
    registry = kopf.OperatorRegistry()
    register(
        registry,
        runtime,
        login=lambda **_: kopf.ConnectionInfo(server=str(cluster.url), insecure=True),
    )
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.watching.reconnect_backoff = 0.1
    stop, ready = threading.Event(), threading.Event()

    async def run() -> None:
        try:
            await kopf.operator(
                registry=registry,
                settings=kopf_settings,
                clusterwide=True,
                standalone=True,
                stop_flag=stop,
                ready_flag=ready,
            )
        finally:
            await runtime.close()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 15), "the operator did not start"
        yield runtime
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 15)
        assert not thread.is_alive(), "the operator did not stop"


async def eventually(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait for ``condition`` to return something truthy; fail the test if it never does."""
    deadline = asyncio.get_running_loop().time() + timeout
    last_error: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            result = condition()
            if result:
                return result
        except (KeyError, TypeError, AttributeError) as error:
            last_error = error
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error!r})")


def kubeconfig(cluster: kmock.KubernetesEmulator, tmp_path: Path) -> Path:
    """A kubeconfig pointing at the emulator, default namespace ``shop``."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": str(cluster.url)}}],
                "users": [{"name": "test", "user": {"token": "not-a-secret"}}],
                "contexts": [
                    {
                        "name": "kmock",
                        "context": {"cluster": "kmock", "user": "test", "namespace": "shop"},
                    }
                ],
                "current-context": "kmock",
            }
        )
    )
    return path
