"""The e2e tier: the scenarios on a real Kubernetes control plane, two backends.

``local`` (the default, on every CI run): the control plane built from the
Kubernetes sources (``e2e/localcluster.py``: etcd, kube-apiserver, controller
manager, scheduler, kwok). The chart is installed for real with ``helm
install`` in its out-of-cluster mode, the CRDs and examples with ``kubectl
apply``, and the operator runs here as ``rampart-operator run``, authenticated
as the chart's ServiceAccount (a bound token), never as admin: RBAC is what
the chart grants. The API server calls its webhooks at a loopback URL with the
caBundle the operator wrote. Pods are simulated by kwok: no container runs.

``kind`` (``RAMPART_E2E_BACKEND=kind``, ``e2e/run``): a kind cluster, the
image built and loaded, Prometheus (kube-prometheus-stack, trimmed) and the
chart installed in the cluster; deleted at the end (``RAMPART_E2E_KEEP=1``
keeps it). Without a Docker engine, kind or network access to the chart
repositories, every test skips and says which one was missing.

Tests that need one backend ask for the ``local`` or ``kind`` fixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .localcluster import Cluster as LocalCluster
from .localcluster import binaries_missing, local_cluster, wait_for
from .rampart import (
    ALERT_TOKEN,
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    RELEASE,
    Operator,
    install_rampart,
)

__all__ = ["ALERT_TOKEN", "OPERATOR_NAMESPACE", "OPERATOR_USER", "RELEASE", "Operator"]

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools" / "bin"
CLUSTER = "rampart-e2e"
IMAGE = "ghcr.io/rampart-dev/rampart:e2e"
NODE_IMAGE = "kindest/node:v1.33.1"
PROMETHEUS_CHART = "kube-prometheus-stack"
PROMETHEUS_REPO = "https://prometheus-community.github.io/helm-charts"
BACKEND = os.environ.get("RAMPART_E2E_BACKEND", "local")


def _tool(name: str) -> str | None:
    local = TOOLS / name
    return str(local) if local.exists() else shutil.which(name)


def missing_prerequisite() -> str | None:
    """Why the e2e tier cannot run here, or None when it can."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        first = (info.stderr.strip().splitlines() or ["docker info failed"])[0]
        return f"no Docker engine ({first})"
    for tool in ("kind", "helm", "kubectl"):
        if _tool(tool) is None:
            source = "kind.sigs.k8s.io" if tool == "kind" else "scripts/install"
            return f"no {tool} (from {source})"
    return None


@dataclass
class Cluster:
    kubeconfig: Path

    def run(self, *args: str, input: str | None = None, check: bool = True) -> str:
        tool = _tool(args[0])
        assert tool is not None
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run(
            [tool, *args[1:]], input=input, capture_output=True, text=True, env=env, timeout=600
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout + result.stderr

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self.run("kubectl", *args, input=input, check=check)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        try:
            found: dict[str, Any] = json.loads(out)
        except ValueError:
            return None
        return found

    def wait_for(
        self, what: str, condition: Callable[[], Any], timeout: float = 300, every: float = 2
    ) -> Any:
        return wait_for(what, condition, timeout, every)


def _step(what: str, *command: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    reason = missing_prerequisite()
    if reason:
        pytest.skip(f"e2e needs Docker and kind: {reason}")
    kind, helm = _tool("kind"), _tool("helm")
    assert kind is not None
    assert helm is not None
    kubeconfig = tmp_path_factory.mktemp("kind") / "kubeconfig"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    _step(
        "kind create cluster",
        kind,
        "create",
        "cluster",
        "--name",
        CLUSTER,
        "--image",
        NODE_IMAGE,
        "--kubeconfig",
        str(kubeconfig),
        "--wait",
        "180s",
    )
    try:
        _step("docker build", "docker", "build", "-t", IMAGE, str(ROOT))
        _step("kind load", kind, "load", "docker-image", IMAGE, "--name", CLUSTER)
        _step(
            "helm repo add",
            helm,
            "repo",
            "add",
            "prometheus-community",
            PROMETHEUS_REPO,
            "--force-update",
        )
        _step(
            "install Prometheus",
            helm,
            "install",
            "monitoring",
            f"prometheus-community/{PROMETHEUS_CHART}",
            "--namespace",
            "monitoring",
            "--create-namespace",
            "--values",
            str(ROOT / "e2e" / "manifests" / "prometheus.yaml"),
            "--wait",
            "--timeout",
            "10m",
            env=env,
        )
        kubectl = _tool("kubectl")
        assert kubectl is not None
        _step("namespace rampart", kubectl, "create", "namespace", "rampart", env=env)
        _step(
            "alert token",
            kubectl,
            "-n",
            "rampart",
            "create",
            "secret",
            "generic",
            "rampart-e2e-alert-token",
            "--from-literal=token=e2e-alert-token",
            env=env,
        )
        _step(
            "install Rampart",
            helm,
            "install",
            "rampart",
            str(ROOT / "charts" / "rampart"),
            "--namespace",
            "rampart",
            "--values",
            str(ROOT / "e2e" / "manifests" / "rampart.yaml"),
            "--wait",
            "--timeout",
            "5m",
            env=env,
        )
        _step("helm test", helm, "test", "rampart", "--namespace", "rampart", env=env)
        yield Cluster(kubeconfig)
    finally:
        if os.environ.get("RAMPART_E2E_KEEP") != "1":
            subprocess.run([kind, "delete", "cluster", "--name", CLUSTER], capture_output=True)


@pytest.fixture(scope="session")
def kind_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from kind_cluster(tmp_path_factory)


@pytest.fixture(scope="session")
def local_rampart(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, Operator]]:
    """The local control plane with Rampart installed, and the operator's process."""
    missing = binaries_missing()
    if missing and not os.environ.get("CI"):
        pytest.skip(f"no local control plane ({', '.join(missing)}): run scripts/install")
    workdir = tmp_path_factory.mktemp("cluster")
    with local_cluster(workdir, log=lambda line: print(line, file=sys.stderr)) as kube:
        operator = install_rampart(kube, workdir)
        try:
            yield kube, operator
        finally:
            operator.stop()


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Any:
    """The cluster of the chosen backend with Rampart installed and running; only that
    backend is started."""
    if BACKEND == "kind":
        return request.getfixturevalue("kind_backend")
    return request.getfixturevalue("local_rampart")[0]


@pytest.fixture(scope="session")
def local(cluster: Any) -> LocalCluster:
    """The local control plane: its audit log, its operator process."""
    if not isinstance(cluster, LocalCluster):
        pytest.skip("needs the local control plane (RAMPART_E2E_BACKEND=local)")
    return cluster


@pytest.fixture(scope="session")
def operator(local: LocalCluster, local_rampart: tuple[LocalCluster, Operator]) -> Operator:
    """The operator process running against the local control plane."""
    return local_rampart[1]


@pytest.fixture
def restarts(operator: Operator) -> Iterator[Operator]:
    """The session's operator, put back as it was after the test restarted it."""
    original = dict(operator.env)
    try:
        yield operator
    finally:
        if operator.env != original or operator.process.poll() is not None:
            operator.restart(env=original)


@pytest.fixture(scope="session")
def kind(cluster: Any) -> Cluster:
    """A kind cluster, where containers really run."""
    if not isinstance(cluster, Cluster):
        pytest.skip(
            "needs real containers (RAMPART_E2E_BACKEND=kind): on the local control plane "
            "pods are simulated by kwok"
        )
    return cluster


@pytest.fixture
def namespace(local: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, deleted afterwards."""
    # Unique per test and parameter, a DNS label: readable, then a short hash.
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.removeprefix("test_").lower())
    digest = hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:6]  # noqa: S324 - a name
    name = f"t-{slug[:34].strip('-')}-{digest}"
    local.kubectl("create", "namespace", name)
    operator = request.getfixturevalue("local_rampart")[1]
    started_at = operator.log.stat().st_size if operator.log.exists() else 0
    yield name
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        # What the operator said about this test's namespace, beside the failure.
        with operator.log.open("rb") as log:
            # A restart during the test starts the file again.
            log.seek(started_at if started_at <= operator.log.stat().st_size else 0)
            lines = log.read().decode(errors="replace").splitlines()
        print(f"--- operator log for {name} ---", file=sys.stderr)
        for line in lines:
            if name in line or "Traceback" in line or "Error" in line:
                print(line, file=sys.stderr)
    local.kubectl("delete", "namespace", name, "--wait=false")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Each phase's report on its test, so that fixtures can tell a failure at teardown."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
