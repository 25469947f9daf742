"""Rollouts on the real API server beyond the analysis: the traffic routers
(Gateway API, ingress-nginx), the CLI, a restarted operator and the
Alertmanager poller. The Deployments roll through the real controllers and
kwok; the operator is the session's process (restarted where a test says so).
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.monitoring import Alertmanager
from tests.operator.test_rollout_parts import PRIMARY_INGRESS

from rampart_operator.alertproof import PROOF_LABEL

from .conftest import OPERATOR_USER, Operator
from .localcluster import Cluster
from .test_canaries import NAME, alert_labels, app_image, rollout, start_rollout
from .test_control_plane import condition

pytestmark = pytest.mark.integration


def steps(*weights: tuple[int, str]) -> dict[str, Any]:
    return {"steps": [{"weight": w, "pause": p} for w, p in weights] + [{"weight": 100}]}


def replicas(local: Cluster, name: str, namespace: str) -> int:
    return int((local.get("deployment", name, namespace) or {})["spec"]["replicas"])


def annotations(local: Cluster, namespace: str) -> dict[str, str]:
    found = local.get("hardenedservice", NAME, namespace) or {}
    return dict(found["metadata"].get("annotations") or {})


def annotate(local: Cluster, namespace: str, key: str) -> None:
    local.kubectl("annotate", "hardenedservice", NAME, "-n", namespace, f"{key}=now")


def events(local: Cluster, namespace: str, reason: str | None = None) -> list[str]:
    listed = json.loads(local.kubectl("get", "events", "-n", namespace, "-o", "json"))["items"]
    ordered = sorted(listed, key=lambda e: e.get("firstTimestamp") or e["metadata"]["name"])
    return [e["message"] for e in ordered if reason is None or e["reason"] == reason]


def cli(local: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``rampart-operator`` as a user runs it, with the admin kubeconfig."""
    return subprocess.run(
        [sys.executable, "-m", "rampart_operator", *args],
        env={**os.environ, "KUBECONFIG": str(local.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gateway_api_weights_move_on_the_httproute_and_abort_sets_zero(
    local: Cluster, namespace: str
) -> None:
    gateway = {"parentRefs": [{"name": "public"}], "hostnames": ["shop.example"]}
    canary = {
        **steps((30, "10m")),
        "bakeWindow": "0s",
        "traffic": {"router": "gatewayAPI", "gatewayAPI": gateway},
    }

    def weights() -> list[tuple[str, int]]:
        route = local.get("httproute", NAME, namespace) or {}
        rules = (route.get("spec") or {}).get("rules") or [{}]
        return [(r["name"], r["weight"]) for r in rules[0].get("backendRefs") or []]

    start_rollout(local, namespace, canary)
    local.wait_for("30% on the route", lambda: weights() == [(NAME, 70), (f"{NAME}-canary", 30)])
    # The weighing router keeps every stable pod; the canary has its share.
    assert replicas(local, NAME, namespace) == 4
    assert replicas(local, f"{NAME}-canary", namespace) == 2
    service = local.get("service", NAME, namespace) or {}
    assert service["spec"]["selector"]["rampart.dev/track"] == "stable"
    annotate(local, namespace, "rampart.dev/abort")
    local.wait_for("0% on the route", lambda: weights() == [(NAME, 100), (f"{NAME}-canary", 0)])
    local.wait_for("rolled back", lambda: rollout(local, namespace).get("phase") == "RolledBack")
    local.wait_for(
        "the annotation removed", lambda: "rampart.dev/abort" not in annotations(local, namespace)
    )
    assert "aborted by the rampart.dev/abort annotation" in rollout(local, namespace)["message"]


def test_ingress_nginx_canary_ingress_follows_the_weight_and_promotion(
    local: Cluster, namespace: str
) -> None:
    users = copy.deepcopy(PRIMARY_INGRESS)
    users["metadata"] = {"name": "shop", "namespace": namespace}
    local.apply(users)
    before = local.get("ingress", "shop", namespace) or {}
    canary = {
        **steps((20, "10m")),
        "bakeWindow": "0s",
        "traffic": {"router": "ingressNginx", "ingressNginx": {"ingress": "shop"}},
    }

    def canary_weight() -> str | None:
        ingress = local.get("ingress", f"{NAME}-canary", namespace) or {}
        found = (ingress.get("metadata") or {}).get("annotations") or {}
        return found.get("nginx.ingress.kubernetes.io/canary-weight")

    start_rollout(local, namespace, canary)
    local.wait_for("20% on the canary Ingress", lambda: canary_weight() == "20")
    ingress = local.get("ingress", f"{NAME}-canary", namespace) or {}
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == f"{NAME}-canary"
    annotate(local, namespace, "rampart.dev/promote")
    local.wait_for("promoted", lambda: rollout(local, namespace).get("phase") == "Succeeded")
    local.wait_for("0% on the canary Ingress", lambda: canary_weight() == "0")
    assert app_image(local, NAME, namespace) == "ghcr.io/acme/checkout:2"
    # The user's own Ingress is never written.
    after = local.get("ingress", "shop", namespace) or {}
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_ingress_nginx_without_the_users_ingress_stalls_with_the_field(
    local: Cluster, namespace: str
) -> None:
    canary = {
        **steps(),
        "traffic": {"router": "ingressNginx", "ingressNginx": {"ingress": "missing"}},
    }
    local.apply(
        {
            "apiVersion": "rampart.dev/v1alpha1",
            "kind": "HardenedService",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"image": "ghcr.io/acme/checkout:1", "replicas": 4, "canary": canary},
        }
    )
    message = local.wait_for(
        "Stalled",
        lambda: (
            (found := condition(local.get("hardenedservice", NAME, namespace), "Stalled"))
            and found.get("status") == "True"
            and found["message"]
        ),
        timeout=30,
    )
    assert "spec.canary.traffic.ingressNginx.ingress: Ingress missing not found" in message
    assert local.get("deployment", NAME, namespace) is None  # nothing applied


def test_the_cli_names_a_missing_service(local: Cluster, namespace: str) -> None:
    done = cli(local, "abort", "nothing-here", "-n", namespace)
    assert done.returncode == 1, done.stderr
    assert f"HardenedService {namespace}/nothing-here: not found" in done.stderr


def test_a_restarted_operator_carries_on_and_the_cli_promotes(
    local: Cluster, namespace: str, restarts: Operator
) -> None:
    start_rollout(local, namespace, {**steps((25, "1s"), (50, "10m")), "bakeWindow": "0s"})
    local.wait_for("weight 50", lambda: rollout(local, namespace).get("weight") == 50)
    stored = rollout(local, namespace)
    assert (stored["step"], stored["weight"]) == (1, 50)
    assert replicas(local, f"{NAME}-canary", namespace) == 2

    restarted = datetime.datetime.now(datetime.UTC)
    restarts.restart()
    # A new process: it must neither go back to 25% nor skip the 10-minute pause.
    # Its resume looks for every kind of child after applying the ones it renders:
    # once it has looked for an Ingress here, the children show the step it chose.
    local.wait_for(
        "the new process's resume of this service",
        lambda: [
            event
            for event in local.requests(OPERATOR_USER, restarted, frozenset({"get"}))
            if (event.get("objectRef") or {}).get("namespace") == namespace
            and event["objectRef"].get("resource") == "ingresses"
        ],
        timeout=60,
    )
    assert replicas(local, f"{NAME}-canary", namespace) == 2
    resumed = rollout(local, namespace)
    assert (resumed["phase"], resumed["step"], resumed["weight"]) == ("Progressing", 1, 50)
    assert resumed["stepStarted"] == stored["stepStarted"]
    assert events(local, namespace, "CanaryWeight") == [
        "step 1/3: 25% to the canary",
        "step 2/3: 50% to the canary",
    ]
    # Manual promotion through the CLI, which only sets an annotation.
    done = cli(local, "promote", NAME, "-n", namespace)
    assert done.returncode == 0, done.stderr
    local.wait_for("promoted", lambda: rollout(local, namespace).get("phase") == "Succeeded")
    local.wait_for(
        "the annotation removed", lambda: "rampart.dev/promote" not in annotations(local, namespace)
    )
    said = events(local, namespace)
    assert any("promoted by the rampart.dev/promote annotation" in m for m in said), said
    assert app_image(local, NAME, namespace) == "ghcr.io/acme/checkout:2"


def test_polling_alertmanager_catches_alerts_whose_webhook_was_lost(
    local: Cluster, namespace: str, restarts: Operator, tmp_path: Path
) -> None:
    alertmanager = Alertmanager(tmp_path)  # no webhook at all: only polling can see alerts
    try:
        restarts.restart(
            env={
                **restarts.env,
                "RAMPART_ALERTMANAGER_URL": alertmanager.url,
                "RAMPART_ALERT_POLL_INTERVAL": "0.3",
            }
        )
        start_rollout(local, namespace, {**steps((50, "10m")), "bakeWindow": "0s"}, alerts=True)
        local.wait_for("weight 50", lambda: rollout(local, namespace).get("weight") == 50)
        ours = alert_labels(local, namespace)
        # Someone else's alert changes nothing, and so does one that names this
        # service without its proof (another namespace's rule), or with the proof
        # of another service.
        alertmanager.post_alert({"alertname": "DiskFull", "namespace": namespace})
        forged = {"namespace": namespace, "hardenedservice": NAME}
        alertmanager.post_alert({"alertname": "Forged", **forged})
        alertmanager.post_alert({"alertname": "Borrowed", **forged, PROOF_LABEL: "0" * 32})
        local.wait_for(
            "a poll saw the forged alerts",
            lambda: all(
                f"alert {name} names {namespace}/{NAME} without" in restarts.log_text()
                for name in ("Forged", "Borrowed")
            ),
        )
        assert restarts.metric("rampart_operator_alert_notifications_total") in (None, 0)
        assert rollout(local, namespace)["phase"] == "Progressing"
        alertmanager.post_alert({"alertname": "RampartHighErrorRate", **ours})
        local.wait_for(
            "rolled back", lambda: rollout(local, namespace).get("phase") == "RolledBack"
        )
    finally:
        alertmanager.stop()
    assert "alert firing: RampartHighErrorRate" in rollout(local, namespace)["message"]
