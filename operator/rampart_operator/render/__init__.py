"""Pure functions from a HardenedService to the manifests it stands for; no I/O.

``render`` returns them in the order they are applied: the ConfigMap before
the Deployment that mounts it, the Service before the policies that refer to
its pods.
"""

from __future__ import annotations

from typing import Any

from ..schema import apply_defaults
from ..settings import OperatorSettings
from .backup import backup_cron_jobs
from .monitoring import metrics_service, pod_monitor, prometheus_rule, service_monitor
from .network import network_policy, service
from .pdb import pod_disruption_budget
from .workload import config_map, deployment

__all__ = ["render"]


def render(resource: dict[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    """Every child of ``resource`` (a HardenedService, validated) as a manifest."""
    owner = apply_defaults(resource)
    spec = owner["spec"]
    manifests = [
        config_map(owner, spec),
        service(owner, spec),
        deployment(owner, spec, settings),
        pod_disruption_budget(owner, spec),
        network_policy(owner, spec),
        metrics_service(owner, spec),
        pod_monitor(owner, spec),
        service_monitor(owner, spec),
        prometheus_rule(owner, spec),
        *backup_cron_jobs(owner, spec, settings),
    ]
    return [m for m in manifests if m is not None]
