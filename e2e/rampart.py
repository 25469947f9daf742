"""Rampart installed on the local control plane the way a user installs it out of cluster.

``install_rampart(cluster, workdir, values)``: the third-party CRDs,
``helm install charts/rampart`` in its out-of-cluster mode (both webhook
configurations call a loopback URL), ``kubectl apply`` of ``crds/``, and
``rampart-operator run`` as a local process with a token of the chart's
ServiceAccount, never admin, so RBAC is exactly what the chart grants. Used by
the e2e tests and the operator benchmarks.
"""

from __future__ import annotations

import json
import os
import random
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .localcluster import PORTS, Cluster

__all__ = [
    "ALERT_TOKEN",
    "OPERATOR_NAMESPACE",
    "OPERATOR_USER",
    "RELEASE",
    "Operator",
    "install_rampart",
    "start_operator",
]

ROOT = Path(__file__).resolve().parent.parent
RELEASE = OPERATOR_NAMESPACE = "rampart"
# The chart's ServiceAccount, as `kubectl create token` names it in audit events.
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{RELEASE}"
ALERT_TOKEN = "e2e-alert-token"  # noqa: S105 - the local receiver's bearer token


@dataclass
class Operator:
    """``rampart-operator run`` as a local process, its log in a file."""

    process: subprocess.Popen[bytes]
    log: Path
    webhook_url: str
    alert_url: str  # the Alertmanager webhook receiver, with ALERT_TOKEN

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_operator(
    cluster: Cluster, workdir: Path, webhook_url: str, env: dict[str, str] | None = None
) -> Operator | None:
    """The operator with the chart's ServiceAccount's token, once its webhooks serve.

    None when a port of its was taken (the caller picks another).
    """
    kubeconfig = cluster.kubeconfig_for(RELEASE, OPERATOR_NAMESPACE)
    port = webhook_url.rsplit(":", 1)[1]
    alert_port = random.randrange(*PORTS)
    log = workdir / f"operator-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "rampart-operator"), "run", "--liveness", ""],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "RAMPART_NAMESPACE": OPERATOR_NAMESPACE,
                "RAMPART_WEBHOOK_SERVICE": f"{RELEASE}-webhook",
                "RAMPART_WEBHOOK_CONFIGURATION": RELEASE,
                "RAMPART_WEBHOOK_SECRET": f"{RELEASE}-webhook-tls",
                "RAMPART_WEBHOOK_HOST": "127.0.0.1",
                "RAMPART_WEBHOOK_PORT": port,
                "RAMPART_WEBHOOK_URL": webhook_url,
                "RAMPART_METRICS_PORT": "0",
                "RAMPART_ALERT_PORT": str(alert_port),
                "RAMPART_ALERT_HOST": "127.0.0.1",
                "RAMPART_ALERT_TOKEN": ALERT_TOKEN,
                "RAMPART_DRIFT_INTERVAL": "5",
                "RAMPART_ROLLOUT_TICK": "1",
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
        )
    operator = Operator(process, log, webhook_url, f"http://127.0.0.1:{alert_port}/alertmanager")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "address already in use" in operator.log_text().lower():
            operator.stop()
            return None
        if process.poll() is not None:
            break
        if _serving(webhook_url):
            return operator
        time.sleep(0.2)
    operator.stop()
    raise AssertionError(f"the operator did not serve its webhooks:\n{operator.log_text()}")


def _serving(url: str) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # trust is the API server's to check, in the tests
    try:
        with urllib.request.urlopen(f"{url}/healthz", context=context, timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def install_rampart(
    cluster: Cluster,
    workdir: Path,
    values: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    before_operator: Callable[[], None] | None = None,
) -> Operator:
    """CRDs, chart and operator, the way a user installs them out of cluster.

    The webhook URL goes into the chart, so its port is chosen first; should
    the operator find it taken, ``helm upgrade`` moves the URL to another.
    """
    cluster.install_third_party_crds()
    verb = "install"
    for _ in range(4):
        url = f"https://127.0.0.1:{random.randrange(*PORTS)}"
        chart_values = {**(values or {}), "outOfCluster": {"enabled": True, "webhookUrl": url}}
        cluster.run(
            "helm",
            verb,
            RELEASE,
            str(ROOT / "charts" / "rampart"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--values",
            "-",
            input=json.dumps(chart_values),
        )
        verb = "upgrade"
        # helm installed the chart's CRDs; crds/ (the upgrade path the chart's
        # NOTES give) must agree with them.
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        if before_operator is not None:
            before_operator()
            before_operator = None
        operator = start_operator(cluster, workdir, url, env)
        if operator is not None:
            return operator
    raise AssertionError("no free port for the operator's webhooks after 4 attempts")
