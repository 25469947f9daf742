"""#22 item 8: the injection webhook reads no API path an AdmissionReview names.

Nothing authenticates a caller of the webhook port, so the AdmissionReview's
``request.namespace`` is whatever anyone on the network writes. It used to go
straight into ``GET /api/v1/namespaces/<it>`` with the operator's token:
``kube-system/secrets/db`` made that ``GET .../namespaces/kube-system/secrets/db``.
Now the namespace must be a namespace's name (and agree with the object's), is
read only when the Pod does not decide for itself, never for the control
plane's or the operator's namespace, and only for RAMPART_NAMESPACES when set.

The reads go through the real ``NamespaceCache`` into a client that records
the API path it would request.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from rampart_operator.admission.injection import INJECT, namespace_readable
from rampart_operator.admission.server import admission_app
from rampart_operator.admission.service import NamespaceCache
from rampart_operator.kube import resource_path
from rampart_operator.settings import OperatorSettings

LABELLED = {"metadata": {"name": "shop", "labels": {INJECT: "true"}}}


class RecordingClient:
    """Answers a Namespace read for ``shop`` (labelled for injection); records every path."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        self.paths.append(resource_path(api_version, kind, namespace, name))
        return LABELLED if (kind, name) == ("Namespace", "shop") else None


def pod(namespace: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"generateName": "web-", "labels": labels}
    if namespace is not None:
        meta["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "web", "image": "ghcr.io/acme/web:1"}]},
    }


def review(namespace: Any, obj: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"uid": "u1", "operation": "CREATE", "object": obj}
    if namespace is not None:
        request["namespace"] = namespace
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


async def post(
    body: dict[str, Any], settings: OperatorSettings | None = None
) -> tuple[int, Any, list[str]]:
    """The status, the response (or text), and the API paths read."""
    client = RecordingClient()
    lookup = NamespaceCache(client)  # type: ignore[arg-type]
    settings = settings or OperatorSettings(namespace="rampart")
    app = admission_app(settings, lookup, excluded=frozenset({settings.namespace}))
    async with TestClient(TestServer(app)) as http:
        response = await http.post("/inject", json=body)
        if response.status != 200:
            return response.status, await response.text(), client.paths
        return response.status, (await response.json())["response"], client.paths


def injected(answer: dict[str, Any]) -> bool:
    if "patch" not in answer:
        return False
    patch = json.loads(base64.b64decode(answer["patch"]))
    return any(op["path"].startswith("/spec/initContainers") for op in patch)


@pytest.mark.parametrize(
    "forged",
    [
        "kube-system/secrets/db",
        "../api/v1/namespaces/kube-system/secrets/db",
        "shop/secrets/db",
        "shop?watch=true",
        "Shop",
        "a" * 64,
        "",
        7,
    ],
)
async def test_a_namespace_that_is_not_a_namespaces_name_is_never_read(forged: Any) -> None:
    status, text, paths = await post(review(forged, pod()))
    assert paths == []
    assert status == 400
    assert "request.namespace" in text


async def test_a_pods_namespace_contradicting_the_requests_is_refused_unread() -> None:
    status, text, paths = await post(review("shop", pod(namespace="kube-system")))
    assert (status, paths) == (400, [])
    assert "object.metadata.namespace 'kube-system' is not request.namespace 'shop'" in text
    # Agreeing, or left out (the API server's own Pods of a ReplicaSet): read.
    for obj in (pod(namespace="shop"), pod()):
        status, answer, paths = await post(review("shop", obj))
        assert status == 200
        assert paths == ["/api/v1/namespaces/shop"]
        assert injected(answer)


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "rampart"])
async def test_the_control_planes_and_the_operators_namespaces_are_never_read(
    namespace: str,
) -> None:
    status, answer, paths = await post(review(namespace, pod()))
    assert status == 200
    assert answer == {"uid": "u1", "allowed": True}
    assert paths == []


async def test_with_rampart_namespaces_only_those_are_read() -> None:
    settings = OperatorSettings(namespace="rampart", namespaces=("shop",))
    status, answer, paths = await post(review("billing", pod()), settings)
    assert (status, answer, paths) == (200, {"uid": "u1", "allowed": True}, [])
    # A pod elsewhere may still ask for itself: no read needed.
    status, answer, paths = await post(review("billing", pod(**{INJECT: "true"})), settings)
    assert status == 200
    assert injected(answer)
    assert paths == []
    status, answer, paths = await post(review("shop", pod()), settings)
    assert injected(answer)
    assert paths == ["/api/v1/namespaces/shop"]


@pytest.mark.parametrize("says", ["true", "false"])
async def test_a_pod_that_decides_for_itself_costs_no_read(says: str) -> None:
    status, answer, paths = await post(review("shop", pod(**{INJECT: says})))
    assert status == 200
    assert injected(answer) == (says == "true")
    assert paths == []


def test_what_may_be_read() -> None:
    assert namespace_readable("shop", ())
    assert namespace_readable("shop", ("shop", "billing"))
    assert not namespace_readable("shop", ("billing",))
    assert not namespace_readable("rampart", (), frozenset({"rampart"}))
    assert not namespace_readable("kube-system", ("kube-system",))
    assert not namespace_readable("kube-system/secrets/db", ())


async def test_the_cache_refuses_names_that_are_not_a_namespaces_and_stays_bounded() -> None:
    client = RecordingClient()
    times = iter(range(1000))
    cache = NamespaceCache(client, clock=lambda: float(next(times)), size=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a namespace's name"):
        await cache("kube-system/secrets/db")
    assert client.paths == []
    for name in ("a", "b", "c", "d", "e"):
        await cache(name)
    assert len(cache._seen) == 3
    assert list(cache._seen) == ["c", "d", "e"]
    assert await cache("shop") == LABELLED["metadata"]


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("kube-system/secrets", "x"),
        ("shop", "db/../../kube-system/secrets/x"),
        ("shop", "x?watch=true"),
        ("shop", "x#y"),
        ("shop", "%2e%2e"),
        ("..", "x"),
        ("shop", "."),
    ],
)
def test_no_name_can_address_another_object_than_the_one_named(namespace, name):
    with pytest.raises(ValueError, match="cannot be part of an API path"):
        resource_path("v1", "Secret", namespace, name)
    assert resource_path("v1", "Secret", "shop", "db") == "/api/v1/namespaces/shop/secrets/db"
