"""Weights on a Gateway API HTTPRoute: two backendRefs, the Service and its canary twin.

The operator owns the HTTPRoute (named like the HardenedService) and fills
in the user's ``parentRefs`` and ``hostnames``; any Gateway implementation
(Envoy Gateway, Istio, Cilium, NGINX Gateway Fabric, ...) splits requests by
the weights, to the percent.
"""

from __future__ import annotations

from typing import Any

from ..names import child_metadata
from .base import Manifest, Reference, WeighingRouter, canary_service

__all__ = ["GatewayAPIRouter"]


class GatewayAPIRouter(WeighingRouter):
    def manifests(
        self,
        owner: Manifest,
        spec: dict[str, Any],
        weight: int,
        live: dict[Reference, Manifest | None],
    ) -> list[Manifest]:
        name = owner["metadata"]["name"]
        gateway = spec["canary"]["traffic"]["gatewayAPI"]
        port = (spec.get("service") or {}).get("port", 80)
        route_spec: dict[str, Any] = {"parentRefs": gateway["parentRefs"]}
        if gateway.get("hostnames"):
            route_spec["hostnames"] = gateway["hostnames"]
        route_spec["rules"] = [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": gateway.get("path", "/")}}],
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
