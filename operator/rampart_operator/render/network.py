"""The Service in front of the sidecar, and the NetworkPolicy (on by default)."""

from __future__ import annotations

from typing import Any

from ..api.spec import HardenedServiceSpec, NetworkPolicySpec
from .names import OWNER_LABEL, TRACK_LABEL, child_metadata
from .sidecar import PROXY_PORT_NAME, sidecar_ports

__all__ = ["network_policy", "service"]

Manifest = dict[str, Any]
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set by the API server on every namespace


def service(owner: Manifest, spec: HardenedServiceSpec, stable_only: bool = False) -> Manifest:
    name = owner["metadata"]["name"]
    svc = spec.service
    selector = {"app.kubernetes.io/name": name, OWNER_LABEL: name}
    if stable_only:
        # A router weighs this Service against the canary's own.
        selector[TRACK_LABEL] = "stable"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, name, "service"),
        "spec": {
            "type": svc.type,
            # Without a weighing router, stable and canary pods alike: the
            # replica counts set the weights.
            "selector": selector,
            # Traffic reaches the app only through its sidecar.
            "ports": [
                {
                    "name": "http",
                    "port": svc.port,
                    "targetPort": PROXY_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def network_policy(
    owner: Manifest, spec: HardenedServiceSpec, monitoring_namespace: str
) -> Manifest | None:
    """On unless ``networkPolicy.enabled: false``: the sidecar's port from ``from``
    (anyone by default), its admin port (metrics, cache and detailed health, no
    authentication) from ``metricsFrom``, by default only the administrator's
    monitoring namespace, and the application's own port from nobody."""
    policy = spec.network_policy or NetworkPolicySpec()
    if not policy.enabled:
        return None
    name = owner["metadata"]["name"]
    proxy_port, admin_port = sidecar_ports(spec)
    proxy_rule: dict[str, Any] = {"ports": [{"port": proxy_port, "protocol": "TCP"}]}
    if policy.from_:
        proxy_rule["from"] = policy.from_
    monitoring = [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: monitoring_namespace}}}]
    admin_peers = policy.metrics_from or (monitoring if monitoring_namespace else [])
    rules = [proxy_rule]
    if admin_peers:  # none: no rule, so nobody (the kubelet's probes are not policed)
        rules.append({"ports": [{"port": admin_port, "protocol": "TCP"}], "from": admin_peers})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(owner, name, "network-policy"),
        "spec": {
            "podSelector": {"matchLabels": {OWNER_LABEL: name}},
            "policyTypes": ["Ingress"],
            # The application's own port is not listed: only the sidecar is reachable.
            "ingress": rules,
        },
    }
