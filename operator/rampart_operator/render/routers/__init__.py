"""Traffic routers: how a canary weight becomes traffic. One module per router.

``router_for(spec)`` picks the one ``spec.canary.traffic.router`` names.
"""

from __future__ import annotations

from ...api.spec import HardenedServiceSpec
from .base import Reference, TrafficRouter
from .gateway_api import GatewayAPIRouter
from .ingress_nginx import IngressNginxRouter
from .replicas import ReplicasRouter

__all__ = ["ROUTERS", "Reference", "TrafficRouter", "router_for"]

ROUTERS: dict[str, TrafficRouter] = {
    "replicas": ReplicasRouter(),
    "gatewayAPI": GatewayAPIRouter(),
    "ingressNginx": IngressNginxRouter(),
}


def router_for(spec: HardenedServiceSpec) -> TrafficRouter:
    return ROUTERS[spec.canary.traffic.router if spec.canary else "replicas"]
