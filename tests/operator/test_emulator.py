"""The emulator speed-up (tests/emulator.py) answers exactly as kmock's own walk does."""

from __future__ import annotations

import aiohttp
import kmock
import pytest
from kmock._internal import dsl

from tests import emulator as fast

PATH = "/apis/rampart.dev/v1alpha1/namespaces/shop/hardenedservices"


def reachable_views(root: dsl.Root) -> list[dsl.View]:
    """Every view the emulator's reactions are matched through, and the views inside them."""
    views: list[dsl.View] = [root]
    for payload in root._payloads:
        view: dsl.View | None = payload._source
        while isinstance(view, dsl.Chained):
            views.append(view)
            view = view._source
    return views


async def test_membership_and_lookups_match_kmocks_own_answers(
    cluster: kmock.KubernetesEmulator,
) -> None:
    # Reactions of the shapes tests use: a filter, a slice of one, and the fallbacks.
    cluster[f"get {PATH}/held"] << {"kind": "HardenedService", "metadata": {"name": "held"}}
    cluster[f"patch {PATH}/svc-2"][:1] << 409
    base = str(cluster.url).rstrip("/")
    async with aiohttp.ClientSession() as client:
        for index in range(3):
            body = {"metadata": {"name": f"svc-{index}", "namespace": "shop"}, "spec": {}}
            async with client.post(base + PATH, json=body) as response:
                assert response.status in (200, 201)
        # The same name in another namespace: lookups must tell them apart.
        other = PATH.replace("/shop/", "/other/")
        body = {"metadata": {"name": "svc-1", "namespace": "other"}, "spec": {"other": True}}
        async with client.post(base + other, json=body) as response:
            assert response.status in (200, 201)
        for path, name, status in [
            (PATH, "svc-1", 200),
            (other, "svc-1", 200),
            (other, "svc-2", 404),
            (PATH, "held", 200),
            (PATH, "absent", 404),
        ]:
            async with client.get(f"{base}{path}/{name}") as response:
                assert response.status == status
        async with client.patch(
            f"{base}{PATH}/svc-2",
            json={},
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            assert response.status == 409
        async with client.get(base + PATH) as response:
            assert len((await response.json())["items"]) == 3
        async with client.get(base + "/apis/rampart.dev/v1alpha1/hardenedservices") as response:
            assert len((await response.json())["items"]) == 4

    requests = list(cluster._requests)
    views = reachable_views(cluster)
    structural = 0
    for view in views:
        for request in requests:
            expected = fast._original_contains(view, request)
            assert fast._contains(view, request) == expected, (view, request)
            structural += fast._contains_request(view, request) is not None
    # The comparison means something only if most answers took the fast path.
    assert structural >= len(requests) * (len(views) - 2)

    getter = fast._original_get_objects
    for request in requests:
        for strict in (True, False):
            assert fast._get_objects(cluster, request, strict) == list(
                getter(cluster, request, strict)
            )


@pytest.mark.parametrize("history", [10, 200])
async def test_a_get_costs_the_same_whatever_was_served_before(
    cluster: kmock.KubernetesEmulator, history: int
) -> None:
    """Membership is decided without walking the history (kmock alone walks all of it)."""
    base = str(cluster.url).rstrip("/")
    async with aiohttp.ClientSession() as client:
        for _ in range(history):
            async with client.get(f"{base}{PATH}/absent") as response:
                assert response.status == 404
    newest = cluster._requests[-1]
    walked = 0

    class Counting(list[object]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            nonlocal walked
            for item in super().__iter__():
                walked += 1
                yield item

        def __reversed__(self):  # type: ignore[no-untyped-def]
            nonlocal walked
            for item in super().__reversed__():
                walked += 1
                yield item

    cluster._requests = Counting(cluster._requests)
    for payload in cluster._payloads:
        fast._contains(payload._source, newest)
    assert 0 < walked <= len(cluster._payloads)
