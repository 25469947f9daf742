"""Deterministic names, labels and owner references for every child."""

from __future__ import annotations

from typing import Any

from ..crd import GROUP, KIND, VERSION

__all__ = [
    "MANAGED_BY",
    "OWNER_LABEL",
    "TRACK_LABEL",
    "child_labels",
    "owner_reference",
    "selector_labels",
]

MANAGED_BY = "rampart"
OWNER_LABEL = f"{GROUP}/hardenedservice"
TRACK_LABEL = f"{GROUP}/track"

Manifest = dict[str, Any]


def selector_labels(name: str, track: str = "stable") -> dict[str, str]:
    """What a Deployment selects on; the Service selects on all but the track."""
    return {"app.kubernetes.io/name": name, OWNER_LABEL: name, TRACK_LABEL: track}


def child_labels(name: str, component: str, track: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        OWNER_LABEL: name,
    }
    if track is not None:
        labels[TRACK_LABEL] = track
    return labels


def owner_reference(owner: Manifest) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    owner: Manifest, name: str, component: str, track: str | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner["metadata"].get("namespace", "default"),
        "labels": child_labels(owner["metadata"]["name"], component, track),
        "ownerReferences": [owner_reference(owner)],
    }
