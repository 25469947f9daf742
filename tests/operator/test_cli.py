"""``rampart-operator`` as users run it: render, validate, crd (run: e2e/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "rampart_operator"]


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, input=stdin, timeout=60, cwd=ROOT
    )


def test_render_prints_the_manifests():
    result = run_cli("render", "-f", "examples/checkout.yaml")
    assert result.returncode == 0, result.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout)]
    assert kinds == ["ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy"]


def test_render_refuses_invalid_input():
    result = run_cli("render", "-f", "examples/invalid/negative-replicas.yaml")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "HardenedService/bad-replicas: spec.replicas:" in result.stderr


def test_validate_reports_every_problem_from_stdin():
    bad = yaml.safe_dump(
        {
            "apiVersion": "rampart.dev/v1alpha1",
            "kind": "HardenedService",
            "metadata": {"name": "two"},
            "spec": {"image": "a", "replicas": -1, "port": 0},
        }
    )
    result = run_cli("validate", "-f", "-", stdin=bad)
    assert result.returncode == 1
    assert "spec.replicas:" in result.stderr
    assert "spec.port:" in result.stderr
    ok = run_cli("validate", "-f", "examples/minimal.yaml")
    assert (ok.returncode, ok.stdout.strip()) == (0, "HardenedService/hello: valid")


def test_crd_command_prints_the_committed_crd():
    result = run_cli("crd")
    assert result.stdout == (ROOT / "crds" / "hardenedservice.yaml").read_text()
