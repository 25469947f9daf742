"""``spec``: the desired hardened workload, the root of the API's models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, WithJsonSchema

from .alerts import AlertsSpec, MonitoringSpec
from .backup import BackupSpec
from .canary import CanarySpec
from .fields import ApiModel, IntOrPercent, Object, Rule, rules

__all__ = [
    "HardenedServiceSpec",
    "NetworkPolicySpec",
    "PodDisruptionBudgetSpec",
    "ServiceSpec",
    "SidecarBlock",
]

IMAGE_OR_TEMPLATE = Rule(
    "has(self.image) || has(self.template)", "set spec.image or spec.template", ".image"
)
NOT_BOTH = Rule(
    "!(has(self.image) && has(self.template))",
    "set spec.image or spec.template, not both",
    ".image",
)
ONE_LIMIT = Rule(
    "!(has(self.maxUnavailable) && has(self.minAvailable))",
    "set maxUnavailable or minAvailable, not both",
)

# ``spec.sidecar`` is the sidecar's settings file less what the operator fills in:
# the sidecar's own model checks it (``settings_from_mapping``), and the schema
# comes from that model (api/sidecar.py), already in the CRD's form.
SidecarBlock = Annotated[dict[str, Any], WithJsonSchema({"x-rampart-structural": "sidecar"})]


class ServiceSpec(ApiModel):
    """The Service, which targets the sidecar's port, never the application's."""

    port: int = Field(80, ge=1, le=65535)
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"


class PodDisruptionBudgetSpec(ApiModel):
    """Default: maxUnavailable 1."""

    model_config = ConfigDict(json_schema_extra=rules(ONE_LIMIT))

    enabled: bool = True
    """false: no PodDisruptionBudget."""
    max_unavailable: IntOrPercent | None = None
    min_available: IntOrPercent | None = None


class NetworkPolicySpec(ApiModel):
    """On by default: only `from` peers (default: any) reach the sidecar's port, only
    `metricsFrom` peers (default: the operator's monitoring namespace) its admin port,
    and nobody the application's own port."""

    enabled: bool = True
    """false: no NetworkPolicy."""
    from_: list[Object] | None = Field(None, alias="from")
    """NetworkPolicyPeers allowed to the sidecar's port; absent: any."""
    metrics_from: list[Object] | None = None
    """NetworkPolicyPeers allowed to the admin port (metrics, cache, health); absent:
    the namespace the administrator set (RAMPART_MONITORING_NAMESPACE, the chart's
    policy.monitoringNamespace)."""


class HardenedServiceSpec(ApiModel):
    """The desired hardened workload."""

    model_config = ConfigDict(json_schema_extra=rules(IMAGE_OR_TEMPLATE, NOT_BOTH))

    image: str | None = Field(None, min_length=1)
    """Shortcut for a template with one container of this image."""
    template: Object | None = None
    """The application's PodTemplateSpec; the sidecar is added to it."""
    replicas: int = Field(2, ge=0, le=1000)
    """Where the Deployment starts; once a HorizontalPodAutoscaler (or kubectl scale)
    has scaled it through the scale subresource, its replicas are the scaler's
    (without a canary; with one, the traffic router sets them)."""
    port: int = Field(8080, ge=1, le=65535)
    """The application's port; the sidecar listens in front of it."""
    service: ServiceSpec = Field(default_factory=ServiceSpec, json_schema_extra={"default": {}})
    pod_disruption_budget: PodDisruptionBudgetSpec | None = None
    network_policy: NetworkPolicySpec | None = None
    sidecar_resources: Object | None = None
    """The sidecar container's ResourceRequirements. Default: requests 50m CPU and
    64Mi, limit 128Mi."""
    sidecar: SidecarBlock | None = None
    alerts: AlertsSpec | None = None
    monitoring: MonitoringSpec | None = None
    backup: BackupSpec | None = None
    canary: CanarySpec | None = None

    def problems(self) -> list[tuple[str, str]]:
        """The rules across fields (each also a CEL rule in the CRD where CEL can say it)."""
        found: list[tuple[str, str]] = []
        if self.image is None and self.template is None:
            found.append(IMAGE_OR_TEMPLATE.problem("spec"))
        if self.image is not None and self.template is not None:
            found.append(NOT_BOTH.problem("spec"))
        pdb = self.pod_disruption_budget
        if pdb and pdb.max_unavailable is not None and pdb.min_available is not None:
            found.append(ONE_LIMIT.problem("spec.podDisruptionBudget"))
        if self.canary:
            found += self.canary.problems("spec.canary")
        if self.backup:
            found += self.backup.problems("spec.backup")
        return found
