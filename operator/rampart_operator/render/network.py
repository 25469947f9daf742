"""The Service in front of the sidecar, and the optional NetworkPolicy."""

from __future__ import annotations

from typing import Any

from .names import OWNER_LABEL, TRACK_LABEL, child_metadata
from .sidecar import PROXY_PORT_NAME, sidecar_ports

__all__ = ["network_policy", "service"]

Manifest = dict[str, Any]


def service(owner: Manifest, spec: dict[str, Any], stable_only: bool = False) -> Manifest:
    name = owner["metadata"]["name"]
    svc = spec.get("service") or {}
    selector = {"app.kubernetes.io/name": name, OWNER_LABEL: name}
    if stable_only:
        # A router weighs this Service against the canary's own.
        selector[TRACK_LABEL] = "stable"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, name, "service"),
        "spec": {
            "type": svc.get("type", "ClusterIP"),
            # Without a weighing router, stable and canary pods alike: the
            # replica counts set the weights.
            "selector": selector,
            # Traffic reaches the app only through its sidecar.
            "ports": [
                {
                    "name": "http",
                    "port": svc.get("port", 80),
                    "targetPort": PROXY_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def network_policy(owner: Manifest, spec: dict[str, Any]) -> Manifest | None:
    policy = spec.get("networkPolicy") or {}
    if not policy.get("enabled"):
        return None
    name = owner["metadata"]["name"]
    proxy_port, admin_port = sidecar_ports(spec)
    proxy_rule: dict[str, Any] = {"ports": [{"port": proxy_port, "protocol": "TCP"}]}
    if policy.get("from"):
        proxy_rule["from"] = policy["from"]
    admin_rule: dict[str, Any] = {"ports": [{"port": admin_port, "protocol": "TCP"}]}
    if policy.get("metricsFrom"):
        admin_rule["from"] = policy["metricsFrom"]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(owner, name, "network-policy"),
        "spec": {
            "podSelector": {"matchLabels": {OWNER_LABEL: name}},
            "policyTypes": ["Ingress"],
            # The application's own port is not listed: only the sidecar is reachable.
            "ingress": [proxy_rule, admin_rule],
        },
    }
