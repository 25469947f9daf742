"""Which Pods get the sidecar injected, and the JSON patch that injects it.

The Linkerd and Istio model: ``rampart.dev/inject: "true"`` as a label or an
annotation on a Pod or its Namespace asks for the sidecar; ``"false"`` on the
Pod opts it out of a namespace-wide ``"true"``. Pure: the webhook server
passes in the Namespace's metadata it looked up, and only when
``namespace_matters`` and ``namespace_readable`` both say so: the namespace
comes from the AdmissionReview, which anyone who reaches the webhook's port
can write.

The injected sidecar reads its settings from flags (upstream = the app's
port on loopback), or from a ConfigMap named by ``rampart.dev/config`` with a
``sidecar.yaml`` key, the same file format as ``spec.sidecar``; flags win.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..crd import GROUP
from ..render.sidecar import (
    CONFIG_KEY,
    CONFIG_MOUNT,
    CONFIG_VOLUME,
    CONFIG_VOLUME_MOUNT,
    DEFAULT_RESOURCES,
    SIDECAR_NAME,
    proxy_container,
)
from ..settings import OperatorSettings

__all__ = [
    "APP_PORT",
    "CONFIG",
    "INJECT",
    "INJECTED",
    "Decision",
    "decide",
    "injection_patch",
    "is_namespace_name",
    "namespace_matters",
    "namespace_readable",
]

INJECT = f"{GROUP}/inject"
INJECTED = f"{GROUP}/injected"
APP_PORT = f"{GROUP}/app-port"
PROXY_PORT = f"{GROUP}/proxy-port"
ADMIN_PORT = f"{GROUP}/admin-port"
CONFIG = f"{GROUP}/config"
DEFAULT_APP_PORT = 8080
DEFAULT_PROXY_PORT = 8000
DEFAULT_ADMIN_PORT = 9901
# Never injected, whatever they carry: the control plane's own namespaces.
ALWAYS_EXCLUDED = frozenset({"kube-system", "kube-public", "kube-node-lease"})
YES = frozenset({"true", "enabled"})
NO = frozenset({"false", "disabled"})
# A namespace's name: an RFC 1123 label, as the API server requires.
NAMESPACE_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Decision:
    inject: bool
    reason: str
    # Said back to whoever created the Pod (kubectl prints admission warnings).
    warning: str | None = None


def _asked(meta: dict[str, Any]) -> str | None:
    """The Pod's or Namespace's answer: "true", "false", something else, or None."""
    for source in (meta.get("annotations") or {}, meta.get("labels") or {}):
        value = source.get(INJECT)
        if value is not None:
            return str(value).strip().lower()
    return None


def _has_sidecar(pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    return any(c.get("name") == SIDECAR_NAME for c in containers if isinstance(c, dict))


def is_namespace_name(name: object) -> bool:
    """Whether ``name`` could name a namespace: nothing else may go into an API path.

    >>> is_namespace_name("shop"), is_namespace_name("kube-system/secrets/x")
    (True, False)
    """
    return isinstance(name, str) and NAMESPACE_NAME.fullmatch(name) is not None


def namespace_matters(pod: dict[str, Any], namespace: str, excluded: frozenset[str]) -> bool:
    """Whether the namespace's labels could change ``decide``'s answer for ``pod``.

    Not in a namespace never injected, nor for a pod with the sidecar, nor for
    one that says yes or no itself: then nothing needs to be read.
    """
    if namespace in ALWAYS_EXCLUDED or namespace in excluded or _has_sidecar(pod):
        return False
    pod_says = _asked(pod.get("metadata") or {})
    return pod_says not in YES and pod_says not in NO


def namespace_readable(
    namespace: str, served: tuple[str, ...], excluded: frozenset[str] = frozenset()
) -> bool:
    """Whether the webhook may read this Namespace with the operator's credentials.

    A valid name, never the control plane's namespaces or ``excluded`` (the
    operator's own), and one of ``served`` (RAMPART_NAMESPACES) when set.
    """
    return (
        is_namespace_name(namespace)
        and namespace not in ALWAYS_EXCLUDED
        and namespace not in excluded
        and (not served or namespace in served)
    )


def decide(
    pod: dict[str, Any],
    namespace: str,
    namespace_meta: dict[str, Any] | None,
    excluded: frozenset[str] = frozenset(),
) -> Decision:
    if namespace in ALWAYS_EXCLUDED or namespace in excluded:
        return Decision(False, f"namespace {namespace} is never injected")
    if _has_sidecar(pod):
        return Decision(False, "the pod already has the sidecar")
    pod_says = _asked(pod.get("metadata") or {})
    namespace_says = _asked(namespace_meta or {})
    if pod_says in NO:
        return Decision(False, f"the pod says {INJECT}: {pod_says}")
    if pod_says not in YES and namespace_says not in YES:
        unknown = next((v for v in (pod_says, namespace_says) if v and v not in NO), None)
        warning = (
            f"{INJECT}: {unknown!r} is neither true nor false; not injected" if unknown else None
        )
        return Decision(False, "not asked for", warning)
    if (pod.get("spec") or {}).get("hostNetwork"):
        return Decision(
            False,
            "host network",
            "rampart: a hostNetwork pod shares the node's ports; the sidecar is not injected",
        )
    asked_by = "pod" if pod_says in YES else f"namespace {namespace}"
    return Decision(True, f"asked for by the {asked_by}")


def _port(annotations: dict[str, Any], key: str, default: int) -> int:
    value = annotations.get(key)
    if value is None:
        return default
    try:
        port = int(str(value))
    except ValueError:
        raise ValueError(f"{key}: {value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{key}: {port} is not between 1 and 65535")
    return port


def _app_port(pod: dict[str, Any], annotations: dict[str, Any]) -> int:
    if APP_PORT in annotations:
        return _port(annotations, APP_PORT, DEFAULT_APP_PORT)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("protocol", "TCP") == "TCP" and "containerPort" in port:
                return int(port["containerPort"])
    return DEFAULT_APP_PORT


def _escape(key: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _add_to_list(spec: dict[str, Any], field: str, item: Any, first: bool) -> dict[str, Any]:
    if not spec.get(field):
        return {"op": "add", "path": f"/spec/{field}", "value": [item]}
    return {"op": "add", "path": f"/spec/{field}/{0 if first else '-'}", "value": item}


def _add_annotation(meta: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    if not meta.get("annotations"):
        return {"op": "add", "path": "/metadata/annotations", "value": {key: value}}
    return {"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value}


def injection_patch(pod: dict[str, Any], settings: OperatorSettings) -> list[dict[str, Any]]:
    """JSON patch operations (RFC 6902) adding the sidecar to ``pod``.

    Raises ValueError, with the reason, when the Pod's annotations cannot work.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    app_port = _app_port(pod, annotations)
    proxy_port = _port(annotations, PROXY_PORT, DEFAULT_PROXY_PORT)
    admin_port = _port(annotations, ADMIN_PORT, DEFAULT_ADMIN_PORT)
    if len({app_port, proxy_port, admin_port}) < 3:
        raise ValueError(
            f"the app port {app_port}, proxy port {proxy_port} and admin port {admin_port} "
            f"must differ (set {PROXY_PORT} or {ADMIN_PORT})"
        )
    taken = {
        int(port["containerPort"])
        for container in spec.get("containers") or []
        for port in container.get("ports") or []
        if "containerPort" in port
    }
    for port in (proxy_port, admin_port):
        if port in taken:
            raise ValueError(f"port {port} is already a container's; set {PROXY_PORT}/{ADMIN_PORT}")
    config_map = annotations.get(CONFIG)
    if config_map and any(v.get("name") == CONFIG_VOLUME for v in spec.get("volumes") or []):
        raise ValueError(f"the pod already has a volume named {CONFIG_VOLUME}")
    args = ["rampart-sidecar"]
    if config_map:
        args += ["--config", f"{CONFIG_MOUNT}/{CONFIG_KEY}"]
    args += [
        "--upstream",
        f"http://127.0.0.1:{app_port}",
        "--listen",
        f"0.0.0.0:{proxy_port}",
        "--admin",
        f"0.0.0.0:{admin_port}",
    ]
    native = settings.native_sidecar
    container = proxy_container(
        settings,
        args=args,
        ports=(proxy_port, admin_port),
        env=[],
        resources=DEFAULT_RESOURCES,
        mounts=[CONFIG_VOLUME_MOUNT] if config_map else [],
        native=native,
    )
    if native:
        # First, so the proxy is up before any other init container runs.
        patch = [_add_to_list(spec, "initContainers", container, first=True)]
    else:
        patch = [_add_to_list(spec, "containers", container, first=False)]
    if config_map:
        volume = {
            "name": CONFIG_VOLUME,
            "configMap": {"name": config_map, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]},
        }
        patch.append(_add_to_list(spec, "volumes", volume, first=False))
    patch.append(_add_annotation(meta, INJECTED, settings.sidecar_image))
    default_container = "kubectl.kubernetes.io/default-container"
    containers = spec.get("containers") or []
    if not native and containers and default_container not in annotations:
        # `kubectl logs` and `exec` keep landing in the app, not in the sidecar.
        patch.append(
            {
                "op": "add",
                "path": f"/metadata/annotations/{_escape(default_container)}",
                "value": containers[0].get("name", ""),
            }
        )
    return patch
