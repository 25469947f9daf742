"""``rampart-operator`` as users run it: render, validate, and run against an API server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.operator.conftest import HSVC, eventually, kubeconfig

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


@pytest.mark.integration
async def test_run_reconciles_through_a_kubeconfig(cluster, tmp_path):
    config = kubeconfig(cluster, tmp_path)
    metrics_port, liveness_port = free_port(), free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(config),
        "RAMPART_METRICS_PORT": str(metrics_port),
        "RAMPART_DRIFT_INTERVAL": "60",
    }
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "run",
        "--liveness",
        f"http://127.0.0.1:{liveness_port}/healthz",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        cluster.objects[HSVC, "shop", "cli"] = {
            "apiVersion": "rampart.dev/v1alpha1",
            "kind": "HardenedService",
            "metadata": {"name": "cli", "namespace": "shop", "uid": "u", "resourceVersion": "1"},
            "spec": {"image": "ghcr.io/acme/cli:1"},
        }

        def deployment_exists() -> bool:
            found = cluster.objects["apps/v1/deployments", "shop", "cli"]
            return not found.deleted

        await eventually(deployment_exists, timeout=30)

        def fetch(url: str) -> str:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())

        async def endpoint(url: str) -> str:
            try:
                return await asyncio.to_thread(fetch, url)
            except OSError:
                return ""

        metrics = ""
        for _ in range(100):
            metrics = await endpoint(f"http://127.0.0.1:{metrics_port}/metrics")
            if 'rampart_operator_reconciliations_total{result="applied"}' in metrics:
                break
            await asyncio.sleep(0.1)
        assert (
            'rampart_operator_child_changes_total{kind="Deployment",verb="created"} 1.0' in metrics
        )
        assert await endpoint(f"http://127.0.0.1:{liveness_port}/healthz")
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
    assert b"not-a-secret" not in stderr  # the token never reaches the logs
