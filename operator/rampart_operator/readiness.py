"""Whether a Deployment is ready, as kstatus reads it: the rollout and the status both use it."""

from __future__ import annotations

from typing import Any

__all__ = ["deployment_ready"]


def deployment_ready(live: dict[str, Any] | None) -> tuple[bool, str]:
    """Whether a Deployment has rolled out its current spec to every replica."""
    if live is None:
        return False, "the Deployment does not exist yet"
    wanted = live.get("spec", {}).get("replicas", 1)
    status = live.get("status") or {}
    generation = live.get("metadata", {}).get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return False, "the Deployment controller has not seen the latest spec"
    updated = status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted or available < wanted:
        return False, f"{available} of {wanted} replicas available, {updated} updated"
    return True, f"{available} of {wanted} replicas available"
