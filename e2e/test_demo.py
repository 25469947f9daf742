"""``scripts/run-demo``'s tour, run as a user runs it (not a terminal), each stage
checked from the cluster's own state, then stopped with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from .localcluster import Cluster, binaries_missing, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    url = prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
        result: list[dict[str, Any]] = json.load(answer)["data"]["result"]
    return result


def test_the_demo_walks_every_stage_and_removes_what_it_started(tmp_path: Path) -> None:
    if binaries_missing() and not os.environ.get("CI"):
        pytest.skip("no local control plane: run scripts/install")
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "-m", "demo", "--workdir", str(tmp_path / "demo")],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so that nothing it started outlives a failed test
    )
    state_file = tmp_path / "demo" / "demo.json"
    try:

        def up() -> bool:
            if demo.poll() is not None:
                raise AssertionError((tmp_path / "demo.log").read_text()[-5000:])
            return state_file.exists()

        wait_for("the tour over", up, timeout=480, every=1)
        state = json.loads(state_file.read_text())
        kubeconfig = Path(state["kubeconfig"])
        cluster_config = yaml.safe_load(kubeconfig.read_text())
        cluster = Cluster(
            workdir=kubeconfig.parent,
            server=cluster_config["clusters"][0]["cluster"]["server"],
            kubeconfig=kubeconfig,
            ca_file=kubeconfig.parent / "ca.crt",
            audit_log=kubeconfig.parent / "audit.log",
            nodes=[],
            pids={},
        )
        web = cluster.get("hardenedservice", "web", "demo") or {}
        # Stage 1: accepted, its children, Ready.
        kinds = {c["kind"] for c in web["status"]["children"]}
        assert kinds >= {"Deployment", "Service", "ConfigMap", "PrometheusRule", "PodMonitor"}
        # Stage 2: version 2.0.0 promoted after passing analyses.
        stable = cluster.get("deployment", "web", "demo") or {}
        images = [c["image"] for c in stable["spec"]["template"]["spec"]["containers"]]
        assert "ghcr.io/rampart-dev/demo:2.0.0" in images, images
        events = json.loads(cluster.kubectl("get", "events", "-n", "demo", "-o", "json"))["items"]
        reasons = [e["reason"] for e in events]
        assert "AnalysisPassed" in reasons, reasons
        assert any("promoted" in e["message"] for e in events), [e["message"] for e in events]
        # Stage 3: version 3.0.0 rolled back by the error-rate alert, which fired.
        canary = web["status"]["canary"]
        assert canary["phase"] == "RolledBack", canary
        assert "alert firing: RampartHighErrorRate" in canary["message"], canary
        assert canary["revision"] != canary["stable"]
        scaled = cluster.get("deployment", "web-canary", "demo") or {}
        assert scaled["spec"]["replicas"] == 0
        fired = query(
            state["prometheus"],
            'max_over_time(ALERTS{alertname="RampartHighErrorRate", alertstate="firing"}[10m])',
        )
        assert fired, "Prometheus never fired the alert"
        assert fired[0]["metric"]["hardenedservice"] == "web"
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
            raise
        finally:
            log.close()
    assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]
    output = (tmp_path / "demo.log").read_text()
    assert "\x1b[" not in output  # not a terminal: plain lines

    # Everything it started is gone: the control plane, the operator, Prometheus,
    # Alertmanager, the sidecars and the applications.
    assert len(state["pids"]) >= 11, state["pids"]

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(
        f"every process gone: {state['pids']}",
        lambda: all(gone(pid) for pid in state["pids"].values()),
        timeout=30,
        every=0.2,
    )
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(state["prometheus"] + "/-/ready", timeout=2)  # noqa: S310
