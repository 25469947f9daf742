"""Kubernetes Events for what the operator did: `kubectl describe hsvc` shows them.

Posted through the operator's own client rather than kopf's poster, whose
level setting would also turn every "handler succeeded" log line into an
Event. A failed post is logged and never fails a reconciliation.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from typing import Any

from .kube import ApiError, KubeClient

__all__ = ["post_event"]

log = logging.getLogger("rampart.events")
COMPONENT = "rampart-operator"


def event_manifest(owner: dict[str, Any], kind: str, reason: str, message: str) -> dict[str, Any]:
    meta = owner["metadata"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta['name']}.{os.urandom(8).hex()}",
            "namespace": meta.get("namespace", "default"),
        },
        "involvedObject": {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": meta["name"],
            "namespace": meta.get("namespace", "default"),
            "uid": meta.get("uid", ""),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": f"rampart.dev/{COMPONENT}",
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def post_event(
    client: KubeClient, owner: dict[str, Any], kind: str, reason: str, message: str
) -> None:
    try:
        await client.create(event_manifest(owner, kind, reason, message))
    except ApiError as error:
        log.warning("could not post event %s: %s", reason, error)
