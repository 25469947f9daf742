"""No secret value a HardenedService or the operator was given reaches a log, an
Event, a status or a rendered manifest: every credential form (``user:pass@``,
``?password=``, a Secret's value) is used, a failure that prints each URL is
provoked, and everything a user or a tenant can read is searched for them.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from tests.ports import free_port

from .conftest import Operator
from .localcluster import Cluster
from .test_canaries import event_reasons
from .test_control_plane import hardened_service, ready

pytestmark = pytest.mark.integration

NAME = "vault"
CHILD_KINDS = (
    "deployments,services,configmaps,cronjobs,networkpolicies,poddisruptionbudgets,"
    "prometheusrules,podmonitors,ingresses,httproutes"
)


def test_no_secret_value_reaches_logs_events_status_or_manifests(
    local: Cluster, namespace: str, restarts: Operator
) -> None:
    key = os.urandom(32).hex()
    leaks = {
        "postgres password": "pg-pass-7f3a",
        "postgres query password": "pg-query-9c1e",
        "redis password": "redis-pass-2b8d",
        "backup key": key,
        "alertmanager password": "am-pass-4d2f",
        "prometheus password": "prom-pass-6e0a",
    }
    # Nothing listens on these: polling and analysis fail, and say where they failed.
    alertmanager, prometheus = free_port(), free_port()
    restarts.restart(
        env={
            **restarts.env,
            "RAMPART_ALERTMANAGER_URL": f"http://watch:am-pass-4d2f@127.0.0.1:{alertmanager}",
            "RAMPART_ALERT_POLL_INTERVAL": "0.3",
        }
    )
    local.kubectl(
        "create", "secret", "generic", "creds", "-n", namespace,
        "--from-literal=pg=postgres://shop:pg-pass-7f3a@db:5432/shop?password=pg-query-9c1e",
        "--from-literal=redis=redis://:redis-pass-2b8d@cache:6379/0",
        f"--from-literal=key={key}",
    )  # fmt: skip
    canary = {
        "steps": [{"weight": 50, "pause": "10m"}, {"weight": 100}],
        "bakeWindow": "0s",
        "analysis": {
            "interval": "1s",
            "window": "4s",
            "failureLimit": 2,
            "prometheus": {"url": f"http://reader:prom-pass-6e0a@127.0.0.1:{prometheus}"},
            "thresholds": {"errorRate": 0.02},
        },
    }
    backup = {
        "schedule": "0 2 * * *",
        "sources": [{"name": "db", "postgres": {"urlSecretRef": {"name": "creds", "key": "pg"}}}],
        "destination": {"pvc": "backups"},
        "encryption": {"keySecretRef": {"name": "creds", "key": "key"}},
        "drill": {"schedule": "30 4 * * *", "rto": "15m"},
    }
    sidecar = {
        "cache": {"ttl": "60s", "redis": {"urlSecretRef": {"name": "creds", "key": "redis"}}}
    }
    local.apply(hardened_service(NAME, namespace, canary=canary, backup=backup, sidecar=sidecar))
    ready(local, NAME, namespace)
    local.kubectl(
        "patch", "hardenedservice", NAME, "-n", namespace, "--type=merge",
        "-p", '{"spec": {"canary": {"image": "ghcr.io/acme/hello:2"}}}',
    )  # fmt: skip
    local.wait_for(
        "an analysis that could not reach Prometheus",
        lambda: {"AnalysisInconclusive", "AnalysisFailed"} & set(event_reasons(local, namespace)),
        timeout=120,
    )
    local.wait_for(
        "a poll that could not reach Alertmanager",
        lambda: "cannot poll Alertmanager" in restarts.log_text(),
    )
    # Where each URL was printed, it was printed without its credentials.
    assert f"cannot poll Alertmanager at http://127.0.0.1:{alertmanager}/" in restarts.log_text()
    readable = {
        "the operator's log": restarts.log_text(),
        "Events": local.kubectl("get", "events", "-n", namespace, "-o", "json"),
        # Its spec holds what the user wrote there (the analysis URL); its status is ours.
        "the HardenedService's status": json.dumps(
            (local.get("hardenedservice", NAME, namespace) or {})["status"]
        ),
        "the rendered children": local.kubectl(
            "get",
            CHILD_KINDS,
            "-n",
            namespace,
            "-l",
            f"rampart.dev/hardenedservice={NAME}",
            "-o",
            "json",
        ),
    }
    assert json.loads(readable["the rendered children"])["items"]  # the search saw them
    # The analysis said where it failed, without the credentials.
    assert f"http://127.0.0.1:{prometheus}/" in readable["Events"]
    for where, text in readable.items():
        for what, value in leaks.items():
            assert value not in text, f"the {what} is in {where}"
            encoded = base64.b64encode(value.encode()).decode()
            assert encoded not in text, f"the {what}, base64-encoded, is in {where}"
    # Only the Secret holds them, as it should.
    stored = local.get("secret", "creds", namespace) or {}
    assert base64.b64decode(stored["data"]["key"]).decode() == key
