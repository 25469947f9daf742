"""The PodDisruptionBudget: voluntary evictions never take too many pods at once."""

from __future__ import annotations

from typing import Any

from .names import OWNER_LABEL, child_metadata

__all__ = ["pod_disruption_budget"]


def pod_disruption_budget(owner: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    budget = spec.get("podDisruptionBudget") or {}
    if budget.get("enabled", True) is False:
        return None
    name = owner["metadata"]["name"]
    limit = (
        {"minAvailable": budget["minAvailable"]}
        if "minAvailable" in budget
        else {"maxUnavailable": budget.get("maxUnavailable", 1)}
    )
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(owner, name, "disruption-budget"),
        "spec": {
            **limit,
            "selector": {"matchLabels": {OWNER_LABEL: name}},
            # Pods that never became ready may be evicted, so a broken rollout
            # cannot block a node drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
