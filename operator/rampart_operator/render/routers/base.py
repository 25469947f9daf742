"""The TrafficRouter protocol, and what the weighted routers share."""

from __future__ import annotations

import math
from typing import Any, Protocol

from ...api.spec import HardenedServiceSpec
from ..names import TRACK_LABEL, child_metadata, selector_labels
from ..sidecar import PROXY_PORT_NAME

__all__ = ["Reference", "TrafficRouter", "WeighingRouter", "canary_service", "scaled"]

Manifest = dict[str, Any]
Reference = tuple[str, str, str]  # apiVersion, kind, name: a live object a router reads


class TrafficRouter(Protocol):
    """Splits a HardenedService's traffic between its stable and canary pods.

    ``weight`` is the percent of requests the canary should get. Routers are
    pure: what they need from the cluster they name in ``reads`` and are
    handed in ``live``.
    """

    # Whether the main Service selects canary pods too (the replica counts
    # then set the weight) or stable pods only (a router object sets it).
    shares_service: bool

    def canary_replicas(self, total: int, weight: int) -> int:
        """Canary pods for a step of ``weight`` percent."""
        ...

    def stable_replicas(self, total: int, weight: int) -> int:
        """Stable pods while ``weight`` percent goes to the canary."""
        ...

    def reads(self, spec: HardenedServiceSpec) -> list[Reference]: ...

    def manifests(
        self,
        owner: Manifest,
        spec: HardenedServiceSpec,
        weight: int,
        live: dict[Reference, Manifest | None],
    ) -> list[Manifest]:
        """The objects that put ``weight`` into effect (empty when replicas do)."""
        ...

    def problems(
        self, owner: Manifest, spec: HardenedServiceSpec, live: dict[Reference, Manifest | None]
    ) -> list[tuple[str, str]]:
        """(field path, reason) for what the live objects make impossible."""
        ...


def scaled(total: int, weight: int) -> int:
    """Pods for ``weight`` percent of ``total``: rounded up, at least one for any traffic."""
    if weight <= 0 or total <= 0:
        return 0
    return min(total, max(1, math.ceil(total * weight / 100)))


def canary_service(owner: Manifest, spec: HardenedServiceSpec) -> Manifest:
    """A Service selecting only canary pods, for routers that weigh two backends."""
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, f"{name}-canary", "service", track="canary"),
        "spec": {
            "type": "ClusterIP",
            "selector": {
                **{k: v for k, v in selector_labels(name).items() if k != TRACK_LABEL},
                TRACK_LABEL: "canary",
            },
            "ports": [
                {
                    "name": "http",
                    "port": spec.service.port,
                    "targetPort": PROXY_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


class WeighingRouter:
    """What routers that weigh two Services share: every stable pod stays, the
    canary has its step's share, and nothing in the cluster needs reading."""

    shares_service = False

    def canary_replicas(self, total: int, weight: int) -> int:
        return scaled(total, weight)

    def stable_replicas(self, total: int, weight: int) -> int:
        return total

    def reads(self, spec: HardenedServiceSpec) -> list[Reference]:
        return []

    def problems(
        self, owner: Manifest, spec: HardenedServiceSpec, live: dict[Reference, Manifest | None]
    ) -> list[tuple[str, str]]:
        return []
