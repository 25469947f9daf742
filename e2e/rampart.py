"""Rampart installed on the local control plane the way a user installs it out of cluster.

``install_rampart(cluster, workdir, values)``: the third-party CRDs,
``helm install charts/rampart`` in its out-of-cluster mode (both webhook
configurations call a loopback URL), ``kubectl apply`` of ``crds/``, and
``rampart-operator run`` as a local process with a token of the chart's
ServiceAccount, never admin, so RBAC is exactly what the chart grants. Used by
the e2e tests and the operator benchmarks.
"""

from __future__ import annotations

import base64
import json
import os
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

from prometheus_client.parser import text_string_to_metric_families
from tests.ports import free_port, free_ports

from .localcluster import Cluster

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
    metrics_url: str  # its Prometheus metrics
    liveness_url: str  # kopf's health endpoint
    kubeconfig: Path  # the ServiceAccount's, with its token
    cluster: Cluster
    env: dict[str, str]  # what it was started with beside the defaults

    def restart(self, env: dict[str, str] | None = None) -> None:
        """A new process in this one's place (same webhook URL), with ``env`` if given."""
        self.stop()
        wanted = self.env if env is None else env
        for _ in range(4):
            started = start_operator(self.cluster, self.log.parent, self.webhook_url, wanted)
            if started is not None:
                self.__dict__.update(started.__dict__)
                return
        raise AssertionError("no free ports for the restarted operator after 4 attempts")

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """One sample of its metrics, None when it has none."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as answer:  # noqa: S310
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in (labels or {}).items()
                ):
                    return float(sample.value)
        return None

    def alert_ca(self) -> Path:
        """The CA the receiver's certificate chains to, as a file for Alertmanager's
        ``tls_config.ca_file``: what the API server trusts for the webhooks."""
        found = self.cluster.get("validatingwebhookconfiguration", RELEASE) or {}
        bundle = found["webhooks"][0]["clientConfig"]["caBundle"]
        path = self.log.parent / "alert-ca.crt"
        path.write_bytes(base64.b64decode(bundle))
        return path

    def alert_context(self) -> ssl.SSLContext:
        """A client context that trusts the receiver's certificate."""
        return ssl.create_default_context(cafile=str(self.alert_ca()))

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
    alert_port, metrics_port, liveness_port = free_ports(3)
    liveness_url = f"http://127.0.0.1:{liveness_port}/healthz"
    log = workdir / f"operator-{port}-{alert_port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "rampart-operator"), "run", "--liveness", liveness_url],
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
                "RAMPART_METRICS_PORT": str(metrics_port),
                "RAMPART_ALERT_PORT": str(alert_port),
                "RAMPART_ALERT_HOST": "127.0.0.1",
                "RAMPART_ALERT_TOKEN": ALERT_TOKEN,
                "RAMPART_DRIFT_INTERVAL": "5",
                "RAMPART_ROLLOUT_TICK": "1",
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
        )
    operator = Operator(
        process,
        log,
        webhook_url,
        f"https://127.0.0.1:{alert_port}/alertmanager",
        f"http://127.0.0.1:{metrics_port}/metrics",
        liveness_url,
        kubeconfig,
        cluster,
        dict(env or {}),
    )
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
        url = f"https://127.0.0.1:{free_port()}"
        where = {} if "watchNamespaces" in (values or {}) else {"clusterWide": True}
        chart_values = {
            **where,
            **(values or {}),
            "outOfCluster": {"enabled": True, "webhookUrl": url},
        }
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
