"""The sidecar in every pod: its settings file, its container, its volume.

Secrets never land in the ConfigMap: the Redis URL and the cache admin token
reach the sidecar as environment variables from ``secretKeyRef``s.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from rampart_common.durations import parse_duration
from rampart_common.sidecar_settings import parse_host_port

from ..api import HardenedServiceSpec
from ..settings import OperatorSettings
from .security import harden_container

__all__ = [
    "ADMIN_PORT_NAME",
    "CONFIG_KEY",
    "CONFIG_MOUNT",
    "CONFIG_VOLUME",
    "CONFIG_VOLUME_MOUNT",
    "DEFAULT_RESOURCES",
    "PROXY_PORT_NAME",
    "SIDECAR_NAME",
    "config_hash",
    "drain_seconds",
    "proxy_container",
    "secret_names",
    "sidecar_container",
    "sidecar_file",
    "sidecar_ports",
]

SIDECAR_NAME = "rampart-sidecar"
PROXY_PORT_NAME = "rampart-http"
ADMIN_PORT_NAME = "rampart-admin"
CONFIG_MOUNT = "/etc/rampart"
CONFIG_KEY = "sidecar.yaml"
DEFAULT_LISTEN = "0.0.0.0:8000"
DEFAULT_ADMIN = "0.0.0.0:9901"
CONFIG_VOLUME = "rampart-config"
CONFIG_VOLUME_MOUNT = {"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT, "readOnly": True}
DEFAULT_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"memory": "128Mi"},
}


def sidecar_file(spec: HardenedServiceSpec) -> dict[str, Any]:
    """``spec.sidecar`` as the sidecar's settings file, plus the fields the operator owns."""
    settings = copy.deepcopy(spec.sidecar or {})
    settings.setdefault("listen", DEFAULT_LISTEN)
    settings.setdefault("admin", DEFAULT_ADMIN)
    settings.setdefault("upstream", {})["url"] = f"http://127.0.0.1:{spec.port}"
    cache = settings.get("cache")
    if isinstance(cache, dict):
        cache.pop("adminTokenSecretRef", None)
        if isinstance(cache.get("redis"), dict):
            cache["redis"].pop("urlSecretRef", None)
    return settings


def sidecar_ports(spec: HardenedServiceSpec) -> tuple[int, int]:
    file = sidecar_file(spec)
    return parse_host_port(file["listen"])[1], parse_host_port(file["admin"])[1]


def drain_seconds(spec: HardenedServiceSpec) -> float:
    drain = ((spec.sidecar or {}).get("shutdown") or {}).get("drainTimeout", "25s")
    return parse_duration(str(drain))


def config_hash(file: dict[str, Any]) -> str:
    """Changes whenever the file does, so pods restart to read it."""
    return hashlib.sha256(json.dumps(file, sort_keys=True).encode()).hexdigest()[:16]


def _secret_env(spec: HardenedServiceSpec) -> list[dict[str, Any]]:
    cache = (spec.sidecar or {}).get("cache") or {}
    env = []
    refs = {
        "RAMPART_CACHE_REDIS_URL": (cache.get("redis") or {}).get("urlSecretRef"),
        "RAMPART_CACHE_ADMIN_TOKEN": cache.get("adminTokenSecretRef"),
    }
    for variable, ref in refs.items():
        if ref:
            env.append(
                {
                    "name": variable,
                    "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref["key"]}},
                }
            )
    return env


def secret_names(spec: HardenedServiceSpec) -> list[str]:
    """Secrets the pods need; the reconciler checks they exist before rolling out."""
    return sorted({env["valueFrom"]["secretKeyRef"]["name"] for env in _secret_env(spec)})


def sidecar_container(
    spec: HardenedServiceSpec, settings: OperatorSettings, config_map: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container and the volume holding its settings file."""
    proxy_port, admin_port = sidecar_ports(spec)
    container = proxy_container(
        settings,
        args=["rampart-sidecar", "--config", f"{CONFIG_MOUNT}/{CONFIG_KEY}"],
        ports=(proxy_port, admin_port),
        env=_secret_env(spec),
        resources=spec.sidecar_resources or DEFAULT_RESOURCES,
        mounts=[CONFIG_VOLUME_MOUNT],
        native=settings.native_sidecar,
    )
    volume = {
        "name": CONFIG_VOLUME,
        "configMap": {"name": config_map, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]},
    }
    return container, volume


def proxy_container(
    settings: OperatorSettings,
    *,
    args: list[str],
    ports: tuple[int, int],
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    mounts: list[dict[str, Any]],
    native: bool,
) -> dict[str, Any]:
    """The sidecar container, as rendered into Deployments and injected into Pods."""
    proxy_port, admin_port = ports
    container: dict[str, Any] = {
        "name": SIDECAR_NAME,
        "image": settings.sidecar_image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": [
            {"name": PROXY_PORT_NAME, "containerPort": proxy_port, "protocol": "TCP"},
            {"name": ADMIN_PORT_NAME, "containerPort": admin_port, "protocol": "TCP"},
        ],
        "env": env,
        # Ready only when the app behind it answers: this is the pod's readiness.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": ADMIN_PORT_NAME},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": ADMIN_PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": ADMIN_PORT_NAME},
            "periodSeconds": 1,
            "failureThreshold": 30,
        },
        "resources": resources,
        "volumeMounts": mounts,
    }
    if native:
        # A restartable init container: up before the app, down after it.
        container["restartPolicy"] = "Always"
    return harden_container(container)
