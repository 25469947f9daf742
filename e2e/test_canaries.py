"""Canary rollouts on the real API server, with real parts where users have them.

The Deployments roll through the real Deployment controller, scheduler and
kwok. No container runs, so the canary's "pods" are a real sidecar process in
front of a test upstream whose error rate the test sets; a real Prometheus
scrapes that sidecar with the labels the rendered PodMonitor gives a canary
pod, and a real Alertmanager sends its alerts to the operator's receiver.
Alerts count only with the ``rampart_proof`` label the operator rendered on
the service's PrometheusRule, which the tests copy the way a user does.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import Sidecar
from tests.monitoring import CANARY_SERVER_ERRORS, Alertmanager, Prometheus, pod_monitor_job
from tests.traffic import Traffic
from tests.upstream import Upstream

from rampart_operator.alertproof import PROOF_LABEL
from rampart_operator.render import render
from rampart_operator.settings import OperatorSettings
from rampart_operator.validation import validate

from .conftest import ALERT_TOKEN, Operator
from .localcluster import Cluster
from .test_control_plane import condition

NAME = "checkout"
pytestmark = pytest.mark.integration


@pytest.fixture
def canary_pod(tmp_path: Path) -> Iterator[tuple[Upstream, Sidecar]]:
    """What a canary pod would run: the application behind a real sidecar."""
    upstream = Upstream()
    upstream.start()
    # No breaker: at a 30% error rate five failures in a row come every few
    # seconds, and its 503s would be what the analysis measures, not the app.
    sidecar = Sidecar(tmp_path, {"circuitBreaker": {"consecutiveFailures": 0}}, upstream.url)
    try:
        yield upstream, sidecar
    finally:
        sidecar.stop()
        upstream.close()


def scraped_as_canary(sidecar: Sidecar, namespace: str) -> list[dict[str, Any]]:
    """The sidecar scraped as a canary pod through the PodMonitor the operator renders
    for a resource with only ``spec.canary`` (analysed by Prometheus) set."""
    analysis = {"prometheus": {"url": "http://prometheus.monitoring:9090"}}
    canary = {"image": "ghcr.io/acme/checkout:2", "steps": [{"weight": 50}], "analysis": analysis}
    resource = service(namespace, canary)
    assert validate(resource) == []  # render takes a valid resource only
    rendered = render(resource, OperatorSettings())
    monitor = next(m for m in rendered if m["kind"] == "PodMonitor")
    pods = next(m for m in rendered if m["metadata"]["name"] == f"{NAME}-canary")
    address = f"127.0.0.1:{sidecar.admin_port}"
    return [pod_monitor_job(monitor, pods["spec"]["template"], f"{NAME}-canary-0", address)]


def service(namespace: str, canary: dict[str, Any], alerts: bool = False) -> dict[str, Any]:
    spec = {"image": "ghcr.io/acme/checkout:1", "replicas": 4, "canary": canary}
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": NAME, "namespace": namespace, "uid": "uid"},
        "spec": {**spec, "alerts": {}} if alerts else spec,
    }


def alert_labels(local: Cluster, namespace: str) -> dict[str, str]:
    """What a user copies from the rendered PrometheusRule onto an alert of their own
    so that it may roll their canary back."""
    rule = local.get("prometheusrule", NAME, namespace) or {}
    labels = rule["spec"]["groups"][0]["rules"][0]["labels"]
    return {key: labels[key] for key in ("namespace", "hardenedservice", PROOF_LABEL)}


def rollout(local: Cluster, namespace: str) -> dict[str, Any]:
    found = local.get("hardenedservice", NAME, namespace) or {}
    return dict((found.get("status") or {}).get("canary") or {})


def start_rollout(
    local: Cluster, namespace: str, canary: dict[str, Any], alerts: bool = False
) -> None:
    """Version 1 up and Ready through the real controllers, then version 2 asked for."""
    resource = service(namespace, canary, alerts)
    del resource["metadata"]["uid"]
    local.apply(resource)
    local.wait_for(
        "version 1 Ready",
        lambda: (
            condition(local.get("hardenedservice", NAME, namespace), "Ready").get("status")
            == "True"
        ),
    )
    assert rollout(local, namespace)["phase"] == "Initialized"
    local.kubectl(
        "patch",
        "hardenedservice",
        NAME,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"canary": {"image": "ghcr.io/acme/checkout:2"}}}',
    )


def event_reasons(local: Cluster, namespace: str) -> list[str]:
    return local.kubectl(
        "get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}"
    ).split()


def analysis(prometheus: Prometheus, thresholds: dict[str, Any]) -> dict[str, Any]:
    """Checks every second over 4 s of the canary's series, two failures to roll back."""
    return {
        "interval": "1s",
        "window": "4s",
        "failureLimit": 2,
        "progressDeadline": "90s",
        "minRequests": 5,
        "prometheus": {"url": prometheus.url},
        "thresholds": thresholds,
    }


def app_image(local: Cluster, name: str, namespace: str) -> str:
    live = local.get("deployment", name, namespace) or {}
    containers = live["spec"]["template"]["spec"]["containers"]
    return str(next(c for c in containers if c["name"] == "app")["image"])


def test_a_healthy_canary_walks_its_steps_and_is_promoted(
    local: Cluster, namespace: str, canary_pod: tuple[Upstream, Sidecar], tmp_path: Path
) -> None:
    _, sidecar = canary_pod
    prometheus = Prometheus(tmp_path, {}, jobs=scraped_as_canary(sidecar, namespace))
    canary = {
        "steps": [{"weight": 25, "pause": "2s"}, {"weight": 50, "pause": "2s"}, {"weight": 100}],
        "bakeWindow": "0s",
        "analysis": analysis(prometheus, {"errorRate": 0.05, "latencyP95": "500ms"}),
    }
    weights: list[int] = []
    try:
        with Traffic(sidecar.url, ["/app"], pause=0.005):
            start_rollout(local, namespace, canary)

            def promoted() -> bool:
                state = rollout(local, namespace)
                if state.get("weight") is not None and state["weight"] not in weights[-1:]:
                    weights.append(state["weight"])
                return state.get("phase") == "Succeeded"

            local.wait_for("the canary promoted", promoted, timeout=90, every=0.1)
    finally:
        prometheus.stop()
    assert [w for w in weights if w][:2] == [25, 50], weights
    # The stable Deployment now runs version 2, rolled out by the real controller.
    assert app_image(local, NAME, namespace) == "ghcr.io/acme/checkout:2"
    final = local.wait_for(
        "version 2 Ready",
        lambda: (
            (found := local.get("hardenedservice", NAME, namespace))
            and condition(found, "Ready").get("status") == "True"
            and found["status"]
        ),
    )
    assert final["phase"] == "Healthy"
    # Every step was judged on real numbers from Prometheus.
    judged = final["canary"]["analysis"]
    assert judged["result"] == "Passed"
    assert judged["values"]["requests"] >= 5
    assert judged["values"]["errorRate"] == 0
    assert 0 < judged["values"]["latencyP95"] < 0.5
    reasons = event_reasons(local, namespace)
    assert reasons.count("AnalysisPassed") >= 3, reasons
    assert "Promoted" in reasons
    assert (local.get("deployment", NAME, namespace) or {})["spec"]["replicas"] == 4
    assert (local.get("deployment", f"{NAME}-canary", namespace) or {})["spec"]["replicas"] == 0
    # Both revisions are kept, the promoted one first.
    revisions = final["revisions"]
    assert revisions[0]["revision"] == final["canary"]["stable"]
    assert [r["template"]["spec"]["containers"][0]["image"] for r in revisions[:2]] == [
        "ghcr.io/acme/checkout:2",
        "ghcr.io/acme/checkout:1",
    ]


def test_a_failing_canary_is_rolled_back_by_analysis(
    local: Cluster, namespace: str, canary_pod: tuple[Upstream, Sidecar], tmp_path: Path
) -> None:
    upstream, sidecar = canary_pod
    upstream.error_rate = 0.3
    prometheus = Prometheus(tmp_path, {}, jobs=scraped_as_canary(sidecar, namespace))
    canary = {
        "steps": [{"weight": 25, "pause": "30s"}, {"weight": 100}],
        "bakeWindow": "0s",
        "analysis": analysis(prometheus, {"errorRate": 0.05}),
    }
    weights: list[int] = []

    def rolled_back() -> bool:
        state = rollout(local, namespace)
        if state.get("weight") is not None and state["weight"] not in weights[-1:]:
            weights.append(state["weight"])
        return state.get("phase") == "RolledBack"

    try:
        with Traffic(sidecar.url, ["/app"], pause=0.005):
            start_rollout(local, namespace, canary)
            local.wait_for("rolled back", rolled_back, timeout=60, every=0.1)
    finally:
        prometheus.stop()
    # 25% (the first weight may come before the first look), then 0: never further.
    assert weights[-2:] == [25, 0], weights
    assert set(weights) <= {0, 25}, weights
    found = local.wait_for(
        "the status after the rollback",
        lambda: (
            (item := local.get("hardenedservice", NAME, namespace))
            and item["status"]["phase"] != "Progressing"
            and item
        ),
    )
    final = found["status"]
    assert final["phase"] == "RolledBack"
    assert final["canary"]["failedChecks"] == 2
    assert "2 failed checks (limit 2)" in final["canary"]["message"]
    measured = final["canary"]["analysis"]["values"]["errorRate"]
    assert 0.15 < measured < 0.45  # what Prometheus computed from the sidecar's histogram
    assert condition(found, "RolledBack").get("status") == "True"
    assert condition(found, "Stalled").get("status") == "True"
    assert condition(found, "Ready").get("status") == "False"
    assert (local.get("deployment", f"{NAME}-canary", namespace) or {})["spec"]["replicas"] == 0
    assert (local.get("deployment", NAME, namespace) or {})["spec"]["replicas"] == 4
    assert app_image(local, NAME, namespace) == "ghcr.io/acme/checkout:1"
    # The Events the operator posted reached the API server (its RBAC allows them).
    reasons = event_reasons(local, namespace)
    assert reasons.count("AnalysisFailed") == 2, reasons


def test_a_firing_alert_rolls_the_canary_back_within_a_second_of_the_webhook(
    local: Cluster,
    namespace: str,
    operator: Operator,
    canary_pod: tuple[Upstream, Sidecar],
    tmp_path: Path,
) -> None:
    upstream, sidecar = canary_pod
    # Only an alert can end a 10-minute pause.
    canary = {"steps": [{"weight": 25, "pause": "10m"}, {"weight": 100}], "bakeWindow": "0s"}
    timed = "rampart_operator_alert_to_rollback_seconds_count"
    rollbacks_before = operator.metric(timed) or 0
    start_rollout(local, namespace, canary, alerts=True)
    # The user's own rule, labelled as the operator labelled the rendered ones.
    own_rule = {
        **CANARY_SERVER_ERRORS,
        "labels": {
            **CANARY_SERVER_ERRORS["labels"],
            PROOF_LABEL: alert_labels(local, namespace)[PROOF_LABEL],
        },
    }
    # The receiver is HTTPS only: the bearer token never crosses the network in the clear.
    plain = operator.alert_url.replace("https://", "http://")
    with pytest.raises(OSError, match=r"Connection|closed|reset"):
        urllib.request.urlopen(plain, b"{}", timeout=5)  # noqa: S310
    alertmanager = Alertmanager(tmp_path, operator.alert_url, ALERT_TOKEN, operator.alert_ca())
    prometheus = Prometheus(
        tmp_path,
        {},
        jobs=scraped_as_canary(sidecar, namespace),
        rules=[{"name": "test", "rules": [own_rule]}],
        alertmanager=alertmanager.url,
    )
    try:
        with Traffic(sidecar.url, ["/app"], pause=0.005):
            local.wait_for("weight 25", lambda: rollout(local, namespace).get("weight") == 25)
            canary_live = local.get("deployment", f"{NAME}-canary", namespace) or {}
            assert canary_live["spec"]["replicas"] == 1
            upstream.error_rate = 0.5  # the canary fails: Prometheus sees it, alerts
            local.wait_for(
                "rolled back",
                lambda: rollout(local, namespace).get("phase") == "RolledBack",
                timeout=30,
            )
    finally:
        prometheus.stop()
        alertmanager.stop()
    final = rollout(local, namespace)
    assert "alert firing: CanaryServerErrors" in final["message"]
    # Timed from the webhook's arrival (bench/rollback_bench.py measures how fast).
    assert operator.metric(timed) == rollbacks_before + 1
    assert final["weight"] == 0
    canary_live = local.get("deployment", f"{NAME}-canary", namespace) or {}
    assert canary_live["spec"]["replicas"] == 0
    # The real controller took the canary's pods away.
    local.wait_for(
        "canary pods gone",
        lambda: (
            (local.get("deployment", f"{NAME}-canary", namespace) or {})
            .get("status", {})
            .get("replicas", 0)
            == 0
        ),
    )
    # Stable stays on version 1.
    assert app_image(local, NAME, namespace) == "ghcr.io/acme/checkout:1"
