"""Restricted security defaults (the Pod Security Standard "restricted" profile).

They fill in only what the user left unset: a field the user wrote wins, so a
workload that needs, say, a writable root filesystem says so explicitly.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["harden_container", "harden_pod"]

CONTAINER_DEFAULTS: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
POD_DEFAULTS: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _fill(target: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    merged = dict(target)
    for key, value in defaults.items():
        if key not in merged:
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = _fill(merged[key], value)
    return merged


def harden_container(container: dict[str, Any]) -> dict[str, Any]:
    return {
        **container,
        "securityContext": _fill(container.get("securityContext") or {}, CONTAINER_DEFAULTS),
    }


def harden_pod(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        **pod_spec,
        "automountServiceAccountToken": pod_spec.get("automountServiceAccountToken", False),
        "securityContext": _fill(pod_spec.get("securityContext") or {}, POD_DEFAULTS),
    }
