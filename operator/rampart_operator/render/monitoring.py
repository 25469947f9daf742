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
from ..api.alerts import AlertsSpec, MonitoringSpec
from ..api.spec import HardenedServiceSpec
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


def _enabled_alerts(spec: HardenedServiceSpec) -> AlertsSpec | None:
    alerts = spec.alerts
    return alerts if alerts is not None and alerts.enabled else None


def alerts_enabled(spec: HardenedServiceSpec) -> bool:
    return _enabled_alerts(spec) is not None


def analysed_by_prometheus(spec: HardenedServiceSpec) -> bool:
    return spec.canary is not None and spec.canary.analysis.prometheus is not None


def _monitoring(spec: HardenedServiceSpec) -> MonitoringSpec | None:
    monitoring = spec.monitoring
    if monitoring is None and (alerts_enabled(spec) or analysed_by_prometheus(spec)):
        monitoring = MonitoringSpec()
    return monitoring


def _metadata(owner: Manifest, name: str, component: str, extra: dict[str, str] | None) -> Any:
    meta = child_metadata(owner, name, component)
    meta["labels"] = {**meta["labels"], **(extra or {})}
    return meta


def prometheus_rule(
    owner: Manifest, spec: HardenedServiceSpec, proof_key: bytes | None
) -> Manifest | None:
    alerts = _enabled_alerts(spec)
    if alerts is None:
        return None
    meta = owner["metadata"]
    namespace = meta.get("namespace", "default")
    signed = proof(proof_key, namespace, meta["name"]) if proof_key else ""
    return {
        "apiVersion": API,
        "kind": "PrometheusRule",
        # kube-prometheus picks rules by label: the user's labels go on the object.
        "metadata": _metadata(owner, meta["name"], "alerts", alerts.labels),
        "spec": {"groups": rule_groups(namespace, meta["name"], spec, signed)},
    }


def pod_monitor(owner: Manifest, spec: HardenedServiceSpec) -> Manifest | None:
    monitoring = _monitoring(spec)
    if monitoring is None or (
        monitoring.pod_monitor is not None and not monitoring.pod_monitor.enabled
    ):
        return None
    name = owner["metadata"]["name"]
    return {
        "apiVersion": API,
        "kind": "PodMonitor",
        "metadata": _metadata(owner, name, "monitoring", monitoring.labels),
        "spec": {
            "selector": {"matchLabels": {OWNER_LABEL: name}},
            "podMetricsEndpoints": [
                {
                    "port": ADMIN_PORT_NAME,
                    "path": "/metrics",
                    "interval": monitoring.interval,
                    "relabelings": RELABELINGS,
                }
            ],
        },
    }


def _service_monitor_on(spec: HardenedServiceSpec) -> bool:
    monitoring = _monitoring(spec)
    return (
        monitoring is not None
        and monitoring.service_monitor is not None
        and monitoring.service_monitor.enabled
    )


def metrics_service(owner: Manifest, spec: HardenedServiceSpec) -> Manifest | None:
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


def service_monitor(owner: Manifest, spec: HardenedServiceSpec) -> Manifest | None:
    monitoring = _monitoring(spec)
    if monitoring is None or not _service_monitor_on(spec):
        return None
    name = owner["metadata"]["name"]
    return {
        "apiVersion": API,
        "kind": "ServiceMonitor",
        "metadata": _metadata(owner, name, "monitoring", monitoring.labels),
        "spec": {
            "selector": {
                "matchLabels": {OWNER_LABEL: name, "app.kubernetes.io/component": "metrics"}
            },
            "endpoints": [
                {
                    "port": ADMIN_PORT_NAME,
                    "path": "/metrics",
                    "interval": monitoring.interval,
                    "relabelings": RELABELINGS,
                }
            ],
        },
    }
