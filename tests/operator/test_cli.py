"""``rampart-operator`` as users run it: render, validate, crd (run: e2e/)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
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


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """A user's mistake is one line on stderr, never a traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("rampart-operator: "), lines
    return lines[0]


def run_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    ("args", "env", "status", "says"),
    [
        (("render", "-f", "nothing.yaml"), {}, 2, "nothing.yaml: cannot read it"),
        (("validate", "-f", "pyproject.toml"), {}, 2, "pyproject.toml: not YAML at line"),
        (
            ("render", "-f", "examples/minimal.yaml"),
            {"RAMPART_SIDECAR_MODE": "sometimes"},
            2,
            "RAMPART_SIDECAR_MODE: 'sometimes' is not auto, native or container",
        ),
        (
            ("render", "-f", "examples/minimal.yaml"),
            {"RAMPART_METRICS_PORT": "eighty"},
            2,
            "RAMPART_METRICS_PORT: 'eighty' is not a whole number",
        ),
        (("run",), {"RAMPART_LOG_LEVEL": "loud"}, 2, "RAMPART_LOG_LEVEL: 'loud' is not"),
        (("promote", "web"), {"KUBECONFIG": "/nowhere/config"}, 2, "cannot use the kubeconfig"),
        (("abort", "web"), {"KUBECONFIG": "/nowhere/config"}, 2, "cannot use the kubeconfig"),
    ],
)
def test_a_users_mistake_is_one_line_and_a_status(
    args: tuple[str, ...], env: dict[str, str], status: int, says: str
) -> None:
    result = run_env(*args, **env)
    assert result.returncode == status, result.stderr
    assert says in one_line(result)


@pytest.mark.parametrize("command", [("run", "--liveness", ""), ("promote", "web")])
def test_an_unreachable_cluster_is_one_line_and_status_3(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    # A port held but not listening: connections are refused, at once, every time.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    try:
        result = run_env(*command, KUBECONFIG=str(kubeconfig))
    finally:
        held.close()
    assert result.returncode == 3, result.stderr
    assert f"cannot reach the API server at https://127.0.0.1:{port}" in one_line(result)
