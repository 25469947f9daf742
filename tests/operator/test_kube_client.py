"""The operator's Kubernetes client under faults a real API server will not
produce on demand: 5xx, throttling, refusals. kmock serves them."""

from __future__ import annotations

import kmock
import kopf
import pytest

from rampart_operator.kube import ApiError, KubeClient

pytestmark = pytest.mark.integration

PATH = "/api/v1/namespaces/shop/configmaps/settings"


@pytest.fixture
def cluster(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    kmock.resources["v1/configmaps"] = kmock.ResourceInfo(
        kind="ConfigMap", namespaced=True, verbs={"get", "list", "patch", "create"}
    )
    kmock.objects["v1/configmaps", "shop", "settings"] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "shop"},
        "data": {"mode": "fast"},
    }
    return kmock


def client_of(cluster: kmock.KubernetesEmulator) -> KubeClient:
    return KubeClient(kopf.ConnectionInfo(server=str(cluster.url), insecure=True), backoff=0.01)


def gets(cluster: kmock.KubernetesEmulator) -> int:
    return sum(1 for r in cluster._requests if r.method == "GET" and r.url.path == PATH)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
async def test_server_errors_and_throttling_are_retried_until_an_answer(cluster, status):
    cluster[f"get {PATH}"][:3] << status
    client = client_of(cluster)
    try:
        found = await client.get("v1", "ConfigMap", "shop", "settings")
    finally:
        await client.close()
    assert found is not None
    assert found["data"] == {"mode": "fast"}
    assert gets(cluster) == 4  # three refusals, then the answer


async def test_a_server_that_keeps_failing_gives_up_with_its_status(cluster):
    cluster[f"get {PATH}"] << 500
    client = client_of(cluster)
    try:
        with pytest.raises(ApiError) as raised:
            await client.get("v1", "ConfigMap", "shop", "settings")
    finally:
        await client.close()
    assert raised.value.status == 500
    assert raised.value.transient
    assert gets(cluster) == 5  # ATTEMPTS, no more


async def test_a_refusal_is_not_retried_and_absence_is_none(cluster):
    cluster[f"get {PATH}"][:1] << 403
    client = client_of(cluster)
    try:
        with pytest.raises(ApiError) as raised:
            await client.get("v1", "ConfigMap", "shop", "settings")
        assert gets(cluster) == 1
        assert raised.value.status == 403
        assert not raised.value.transient
        assert await client.get("v1", "ConfigMap", "shop", "missing") is None
    finally:
        await client.close()
