"""PrometheusRule, PodMonitor and (on request) ServiceMonitor for one HardenedService.

Nothing here is rendered unless the spec asks: without ``spec.alerts`` and
``spec.monitoring`` a cluster needs no prometheus-operator. ``spec.alerts``
alone brings a PodMonitor along, since alerts without scraped metrics would
never fire, and so does a canary analysed by Prometheus: its built-in checks
select on the ``hardenedservice`` and ``track`` labels only this PodMonitor's
relabelings give the sidecars' series.
"""

from __future__ import annotations

from typing import Any

from ..alertproof import proof
from .alerts import rule_groups
from .names import OWNER_LABEL, TRACK_LABEL, child_metadata
from .sidecar import ADMIN_PORT_NAME

__all__ = ["metrics_service", "pod_monitor", "prometheus_rule", "service_monitor"]

Manifest = dict[str, Any]
API = "monitoring.coreos.com/v1"


def _label(name: str) -> str:
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in name)


# The alerts select on these target labels; the canary analysis tells stable
# from canary by the track.
RELABELINGS = [
    {"sourceLabels": [_label(OWNER_LABEL)], "targetLabel": "hardenedservice"},
    {"sourceLabels": [_label(TRACK_LABEL)], "targetLabel": "track"},
]


def alerts_enabled(spec: dict[str, Any]) -> bool:
    alerts = spec.get("alerts")
    return alerts is not None and alerts.get("enabled", True) is not False


def analysed_by_prometheus(spec: dict[str, Any]) -> bool:
    analysis = (spec.get("canary") or {}).get("analysis") or {}
    return "prometheus" in analysis


def _monitoring(spec: dict[str, Any]) -> dict[str, Any] | None:
    monitoring = spec.get("monitoring")
    if monitoring is None and (alerts_enabled(spec) or analysed_by_prometheus(spec)):
        monitoring = {}
    return monitoring


def _metadata(owner: Manifest, name: str, component: str, extra: dict[str, str] | None) -> Any:
    meta = child_metadata(owner, name, component)
    meta["labels"] = {**meta["labels"], **(extra or {})}
    return meta


def prometheus_rule(
    owner: Manifest, spec: dict[str, Any], proof_key: bytes | None
) -> Manifest | None:
    if not alerts_enabled(spec):
        return None
    meta = owner["metadata"]
    namespace = meta.get("namespace", "default")
    signed = proof(proof_key, namespace, meta["name"]) if proof_key else ""
    return {
        "apiVersion": API,
        "kind": "PrometheusRule",
        # kube-prometheus picks rules by label: the user's labels go on the object.
        "metadata": _metadata(owner, meta["name"], "alerts", spec["alerts"].get("labels")),
        "spec": {"groups": rule_groups(namespace, meta["name"], spec, signed)},
    }


def pod_monitor(owner: Manifest, spec: dict[str, Any]) -> Manifest | None:
    monitoring = _monitoring(spec)
    if monitoring is None or (monitoring.get("podMonitor") or {}).get("enabled", True) is False:
        return None
    name = owner["metadata"]["name"]
    return {
        "apiVersion": API,
        "kind": "PodMonitor",
        "metadata": _metadata(owner, name, "monitoring", monitoring.get("labels")),
        "spec": {
            "selector": {"matchLabels": {OWNER_LABEL: name}},
            "podMetricsEndpoints": [
                {
                    "port": ADMIN_PORT_NAME,
                    "path": "/metrics",
                    "interval": monitoring.get("interval", "30s"),
                    "relabelings": RELABELINGS,
                }
            ],
        },
    }


def _service_monitor_on(spec: dict[str, Any]) -> bool:
    monitoring = _monitoring(spec) or {}
    return bool((monitoring.get("serviceMonitor") or {}).get("enabled", False))


def metrics_service(owner: Manifest, spec: dict[str, Any]) -> Manifest | None:
    """A headless Service on the admin port, for the ServiceMonitor to find the pods."""
    if not _service_monitor_on(spec):
        return None
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, f"{name}-metrics", "metrics"),
        "spec": {
            "clusterIP": "None",
            "selector": {OWNER_LABEL: name},
            "ports": [
                {
                    "name": ADMIN_PORT_NAME,
                    "port": 9901,
                    "targetPort": ADMIN_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def service_monitor(owner: Manifest, spec: dict[str, Any]) -> Manifest | None:
    if not _service_monitor_on(spec):
        return None
    monitoring = _monitoring(spec) or {}
    name = owner["metadata"]["name"]
    return {
        "apiVersion": API,
        "kind": "ServiceMonitor",
        "metadata": _metadata(owner, name, "monitoring", monitoring.get("labels")),
        "spec": {
            "selector": {
                "matchLabels": {OWNER_LABEL: name, "app.kubernetes.io/component": "metrics"}
            },
            "endpoints": [
                {
                    "port": ADMIN_PORT_NAME,
                    "path": "/metrics",
                    "interval": monitoring.get("interval", "30s"),
                    "relabelings": RELABELINGS,
                }
            ],
        },
    }
