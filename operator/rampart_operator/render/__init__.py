"""Pure functions from a HardenedService to the manifests it stands for; no I/O.

``render`` returns them in the order they are applied: the ConfigMap before
the Deployments that mount it; then what moves traffic (the router's
objects, the stable Deployment, the canary Deployment) ahead of everything
else, so a rollback reaches the API first.
"""

from __future__ import annotations

from typing import Any

from ..alertproof import proof_key
from ..api import parse_spec
from ..settings import OperatorSettings
from .backup import backup_cron_jobs
from .drill import drill_cron_jobs
from .monitoring import metrics_service, pod_monitor, prometheus_rule, service_monitor
from .network import network_policy, service
from .pdb import pod_disruption_budget
from .placement import Placement, initial_placement
from .routers import router_for
from .workload import canary_deployment, config_map, deployment

__all__ = ["Placement", "render"]


def render(
    resource: dict[str, Any], settings: OperatorSettings, placement: Placement | None = None
) -> list[dict[str, Any]]:
    """Every child of ``resource`` (a HardenedService, validated) as a manifest."""
    owner = resource  # its metadata: the children's names, labels and ownerReferences
    spec = parse_spec(resource)
    placement = placement or initial_placement(spec)
    traffic: list[dict[str, Any]] = []
    stable_only = False
    if spec.canary:
        router = router_for(spec)
        stable_only = not router.shares_service
        traffic = router.manifests(owner, spec, placement.weight, placement.live or {})
    manifests = [
        config_map(owner, spec),
        service(owner, spec, stable_only=stable_only),
        *traffic,
        deployment(owner, spec, settings, placement),
        canary_deployment(owner, spec, settings, placement),
        pod_disruption_budget(owner, spec),
        network_policy(owner, spec, settings.monitoring_namespace),
        metrics_service(owner, spec),
        pod_monitor(owner, spec),
        service_monitor(owner, spec),
        prometheus_rule(owner, spec, proof_key(settings.alert_token)),
        *backup_cron_jobs(owner, spec, settings),
        *drill_cron_jobs(owner, spec, settings),
    ]
    return [m for m in manifests if m is not None]
