"""The stable and canary Deployments, and the ConfigMap holding their sidecars' settings."""

from __future__ import annotations

import copy
import math
from typing import Any

import yaml

from ..api import HardenedServiceSpec
from ..revisions import Revision
from ..settings import OperatorSettings
from .names import child_metadata, selector_labels
from .placement import Placement
from .security import harden_container, harden_pod
from .sidecar import (
    CONFIG_KEY,
    SIDECAR_NAME,
    config_hash,
    drain_seconds,
    sidecar_container,
    sidecar_file,
)

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"

__all__ = [
    "REVISION_ANNOTATION",
    "canary_deployment",
    "config_map",
    "deployment",
    "pod_template",
]

REVISION_ANNOTATION = "rampart.dev/revision"

Manifest = dict[str, Any]


def config_map(owner: Manifest, spec: HardenedServiceSpec) -> Manifest:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, f"{name}-sidecar", "sidecar-config"),
        "data": {CONFIG_KEY: yaml.safe_dump(sidecar_file(spec), sort_keys=True)},
    }


def pod_template(
    owner: Manifest,
    spec: HardenedServiceSpec,
    settings: OperatorSettings,
    track: str,
    app: Revision,
) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    template = copy.deepcopy(app.template)
    pod = harden_pod(template.get("spec") or {})
    sidecar, volume = sidecar_container(spec, settings, f"{name}-sidecar")
    containers = [harden_container(c) for c in pod.get("containers", [])]
    init_containers = [harden_container(c) for c in pod.get("initContainers", [])]
    if settings.native_sidecar:
        init_containers = [*init_containers, sidecar]
    else:
        containers = [sidecar, *containers]
    pod["containers"] = containers
    if init_containers:
        pod["initContainers"] = init_containers
    pod["volumes"] = [*pod.get("volumes", []), volume]
    # Room for the sidecar's drain before the kubelet's SIGKILL.
    pod.setdefault("terminationGracePeriodSeconds", math.ceil(drain_seconds(spec)) + 5)
    metadata = copy.deepcopy(template.get("metadata") or {})
    metadata["labels"] = {**metadata.get("labels", {}), **selector_labels(name, track)}
    metadata["annotations"] = {
        **metadata.get("annotations", {}),
        "rampart.dev/sidecar-config": config_hash(sidecar_file(spec)),
        # Tells the admission webhook this pod already has its sidecar.
        "rampart.dev/injected": SIDECAR_NAME,
    }
    apps = [c for c in containers if c.get("name") != SIDECAR_NAME]
    if apps:
        # `kubectl logs` and `exec` land in the app, not in the sidecar put first.
        metadata["annotations"].setdefault(DEFAULT_CONTAINER, apps[0].get("name", ""))
    if spec.canary:
        # Which revision the pods run: the rollout tells stable from canary by it,
        # and a changed ConfigMap or Secret rolls the pods through it.
        metadata["annotations"][REVISION_ANNOTATION] = app.id
    return {"metadata": metadata, "spec": pod}


def deployment(
    owner: Manifest, spec: HardenedServiceSpec, settings: OperatorSettings, placement: Placement
) -> Manifest:
    return _deployment(owner, spec, settings, "stable", placement.stable, placement.stable_replicas)


def canary_deployment(
    owner: Manifest, spec: HardenedServiceSpec, settings: OperatorSettings, placement: Placement
) -> Manifest | None:
    if placement.canary is None:
        return None
    return _deployment(owner, spec, settings, "canary", placement.canary, placement.canary_replicas)


def _deployment(
    owner: Manifest,
    spec: HardenedServiceSpec,
    settings: OperatorSettings,
    track: str,
    app: Revision,
    replicas: int,
) -> Manifest:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(
            owner, name if track == "stable" else f"{name}-{track}", "workload", track=track
        ),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(name, track)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": pod_template(owner, spec, settings, track, app),
        },
    }
