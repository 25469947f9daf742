"""Weights on a Gateway API HTTPRoute: two backendRefs, the Service and its canary twin.

The operator owns the HTTPRoute (named like the HardenedService) and fills
in the user's ``parentRefs`` and ``hostnames``; any Gateway implementation
(Envoy Gateway, Istio, Cilium, NGINX Gateway Fabric, ...) splits requests by
the weights, to the percent.
"""

from __future__ import annotations

from typing import Any

from ...api.canary import GatewayApiRouter
from ...api.spec import HardenedServiceSpec
from ..names import child_metadata
from .base import Manifest, Reference, WeighingRouter, canary_service

__all__ = ["GatewayAPIRouter"]


class GatewayAPIRouter(WeighingRouter):
    def manifests(
        self,
        owner: Manifest,
        spec: HardenedServiceSpec,
        weight: int,
        live: dict[Reference, Manifest | None],
    ) -> list[Manifest]:
        name = owner["metadata"]["name"]
        gateway = _settings(spec)
        port = spec.service.port
        route_spec: dict[str, Any] = {"parentRefs": gateway.parent_refs}
        if gateway.hostnames:
            route_spec["hostnames"] = gateway.hostnames
        route_spec["rules"] = [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": gateway.path}}],
                "backendRefs": [
                    {
                        "group": "",
                        "kind": "Service",
                        "name": name,
                        "port": port,
                        "weight": 100 - weight,
                    },
                    {
                        "group": "",
                        "kind": "Service",
                        "name": f"{name}-canary",
                        "port": port,
                        "weight": weight,
                    },
                ],
            }
        ]
        return [
            canary_service(owner, spec),
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": child_metadata(owner, name, "route"),
                "spec": route_spec,
            },
        ]


def _settings(spec: HardenedServiceSpec) -> GatewayApiRouter:
    gateway = spec.canary.traffic.gateway_api if spec.canary else None
    if gateway is None:  # validation refuses this router without its settings
        raise ValueError("router gatewayAPI needs spec.canary.traffic.gatewayAPI")
    return gateway
