"""The Argo CD health check (Lua 5.1, as Argo CD's gopher-lua runs it) on its own test cases
and on statuses the operator itself computes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from rampart_operator.canary import Rollout
from rampart_operator.render.placement import Placement
from rampart_operator.revisions import Revision
from rampart_operator.rollout import RolloutPlan
from rampart_operator.status import Observation, compute_status

CHECK = Path(__file__).resolve().parents[2] / "gitops/argocd/rampart.dev/HardenedService"
CASES = yaml.safe_load((CHECK / "health_test.yaml").read_text())["tests"]


def health(resource: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(resource, recursive=True)
    result = lua.execute((CHECK / "health.lua").read_text())
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize("case", CASES, ids=[c["inputPath"] for c in CASES])
def test_argo_cd_test_cases(case):
    resource = yaml.safe_load((CHECK / case["inputPath"]).read_text())
    assert health(resource) == case["healthStatus"]


def hardened(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": 2},
        "spec": {"image": "x"},
        "status": status,
    }


def plan(phase: str, weight: int, message: str) -> RolloutPlan:
    rollout = Rollout(phase=phase, stable="a", revision="b", weight=weight, message=message)  # type: ignore[arg-type]
    revision = Revision("a", {}, "")
    return RolloutPlan(None, rollout, [revision], Placement(stable=revision))


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (
            Observation(2, workload_ready=True, workload_message="3 of 3 replicas available"),
            "Healthy",
        ),
        (Observation(2, workload_message="1 of 3 replicas available, 3 updated"), "Progressing"),
        (Observation(2, problems=["spec.port: 9901 is also the sidecar's port"]), "Degraded"),
        (
            Observation(2, workload_ready=True, rollout=plan("Progressing", 10, "step 1/2")),
            "Progressing",
        ),
        (
            Observation(2, workload_ready=True, rollout=plan("RolledBack", 0, "rolled back")),
            "Degraded",
        ),
        (Observation(2, workload_ready=True, rollout=plan("Succeeded", 0, "promoted")), "Healthy"),
        (Observation(1, workload_ready=True), "Progressing"),  # an older generation
    ],
)
def test_the_operators_own_statuses_read_as_argo_cd_should(seen, expected):
    assert health(hardened(compute_status(seen, None)))["status"] == expected
