"""The PodDisruptionBudget: voluntary evictions never take too many pods at once."""

from __future__ import annotations

from typing import Any

from ..api.spec import HardenedServiceSpec, PodDisruptionBudgetSpec
from .names import OWNER_LABEL, child_metadata

__all__ = ["pod_disruption_budget"]


def pod_disruption_budget(
    owner: dict[str, Any], spec: HardenedServiceSpec
) -> dict[str, Any] | None:
    budget = spec.pod_disruption_budget or PodDisruptionBudgetSpec()
    if not budget.enabled:
        return None
    name = owner["metadata"]["name"]
    limit: dict[str, int | str] = (
        {"minAvailable": budget.min_available}
        if budget.min_available is not None
        else {"maxUnavailable": 1 if budget.max_unavailable is None else budget.max_unavailable}
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
