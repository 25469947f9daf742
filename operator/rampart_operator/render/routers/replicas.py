"""Weights by replica counts: stable and canary pods behind the one Service.

No mesh or ingress needed, at the price of granularity: a weight is met to
the nearest pod. With 4 replicas, 10% is 1 canary pod next to 3 stable ones
(25% of requests); 50% is 2 and 2. Status reports the share actually served.
"""

from __future__ import annotations

from ...api.spec import HardenedServiceSpec
from .base import Manifest, Reference, scaled

__all__ = ["ReplicasRouter"]


class ReplicasRouter:
    shares_service = True

    def canary_replicas(self, total: int, weight: int) -> int:
        return scaled(total, weight)

    def stable_replicas(self, total: int, weight: int) -> int:
        if weight >= 100:
            return 0
        # Never below one stable pod while stable still gets traffic.
        return max(1, total - scaled(total, weight)) if total > 0 else 0

    def reads(self, spec: HardenedServiceSpec) -> list[Reference]:
        return []

    def manifests(
        self,
        owner: Manifest,
        spec: HardenedServiceSpec,
        weight: int,
        live: dict[Reference, Manifest | None],
    ) -> list[Manifest]:
        return []

    def problems(
        self, owner: Manifest, spec: HardenedServiceSpec, live: dict[Reference, Manifest | None]
    ) -> list[tuple[str, str]]:
        return []
