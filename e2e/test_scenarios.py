"""The integration scenarios on a real cluster: admission, injection, drift, canaries.

On both backends: real Deployments getting Pods through the real controllers,
the API server calling the webhooks through the caBundle the operator wrote.
On kind only (real containers): Prometheus scraping real sidecars through the
rendered PodMonitor, and Alertmanager reaching the operator's receiver through
the chart's Service; the local control plane proves the canaries with real
Prometheus, Alertmanager and sidecar processes instead (test_canaries.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import IMAGE, Cluster

MANIFESTS = Path(__file__).parent / "manifests"
EXAMPLES = Path(__file__).parents[1] / "examples"
PROMETHEUS = "http://monitoring-kube-prometheus-prometheus.monitoring:9090"


@pytest.fixture(scope="module")
def shop(cluster: Cluster) -> Cluster:
    cluster.kubectl("apply", "-f", str(MANIFESTS / "scenarios.yaml"))
    for name in ("healthy", "broken"):
        cluster.wait_for(f"{name} Ready", lambda name=name: condition(cluster, name, "Ready"))  # type: ignore[misc]
    return cluster


def condition(cluster: Cluster, name: str, kind: str) -> bool:
    found = cluster.get("hardenedservice", name, "shop") or {}
    conditions = (found.get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def canary(error_rate: float) -> dict[str, Any]:
    args = ["python", "-m", "rampart_sidecar.demo", "--host", "127.0.0.1", "--port", "8080"]
    return {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "args": [*args, "--error-rate", str(error_rate)],
                    }
                ]
            }
        },
        "steps": [{"weight": 50, "pause": "30s"}, {"weight": 100}],
        "analysis": {
            "interval": "10s",
            "window": "30s",
            "failureLimit": 2,
            "prometheus": {"url": PROMETHEUS},
            "thresholds": {"errorRate": 0.05},
        },
    }


def rollout(cluster: Cluster, name: str) -> dict[str, Any]:
    found = cluster.get("hardenedservice", name, "shop") or {}
    return (found.get("status") or {}).get("canary") or {}


def test_an_invalid_hardened_service_is_refused_with_its_field(cluster: Cluster) -> None:
    out = cluster.kubectl("apply", "-f", str(EXAMPLES / "invalid" / "bad-enum.yaml"), check=False)
    assert "denied the request" in out or "Invalid value" in out, out
    assert "spec." in out


def test_a_pod_in_a_labelled_namespace_gets_the_sidecar_and_becomes_ready(shop: Cluster) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "injected", "namespace": "shop"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
            "containers": [
                {
                    "name": "app",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "args": ["python", "-m", "rampart_sidecar.demo", "--port", "8080"],
                    "ports": [{"containerPort": 8080}],
                }
            ],
        },
    }
    shop.kubectl("apply", "-f", "-", input=json.dumps(pod))
    live = shop.get("pod", "injected", "shop") or {}
    names = [c["name"] for c in live["spec"].get("initContainers", [])]
    assert names[:1] == ["rampart-sidecar"]
    shop.kubectl("wait", "--for=condition=Ready", "pod/injected", "-n", "shop", "--timeout=120s")


def test_a_deleted_child_is_restored(shop: Cluster) -> None:
    shop.kubectl("delete", "service", "healthy", "-n", "shop")
    shop.wait_for("Service restored", lambda: shop.get("service", "healthy", "shop"), timeout=60)


def test_a_healthy_canary_is_promoted(shop: Cluster, kind: Cluster) -> None:
    patch = {"spec": {"canary": canary(0.0)}}
    shop.kubectl(
        "patch", "hardenedservice", "healthy", "-n", "shop", "--type=merge", "-p", json.dumps(patch)
    )
    shop.wait_for(
        "promoted", lambda: rollout(shop, "healthy").get("phase") == "Succeeded", timeout=600
    )


def test_a_broken_canary_is_rolled_back(shop: Cluster, kind: Cluster) -> None:
    patch = {"spec": {"canary": canary(0.5)}}
    shop.kubectl(
        "patch", "hardenedservice", "broken", "-n", "shop", "--type=merge", "-p", json.dumps(patch)
    )
    shop.wait_for(
        "rolled back", lambda: rollout(shop, "broken").get("phase") == "RolledBack", timeout=600
    )
    canary_deployment = shop.get("deployment", "broken-canary", "shop") or {}
    assert (canary_deployment.get("spec") or {}).get("replicas", 0) == 0
