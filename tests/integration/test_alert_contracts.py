"""The sidecar's alerts fire from what real sidecars emit, and only then.

For each alert on the sidecar's series, a HardenedService asks for it, a real
sidecar is driven to break it (or not), and a real Prometheus scrapes the
sidecar as a pod of the Deployment the operator renders, through the
relabelling of the PodMonitor it renders, and evaluates the PrometheusRule it
renders. The alert must reach ``firing`` with the labels Alertmanager routing
and the automatic rollback rely on, for its own service only. The backup
alerts are tests/backup/test_backup_alerts.py; the hit-ratio collapse compares
with the hour before, which only promtool's simulated time can show
(tests/operator/test_alerts.py).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rampart_operator.render import render
from rampart_operator.settings import OperatorSettings
from tests.conftest import Sidecar, wait_until
from tests.monitoring import Prometheus, pod_monitor_job
from tests.traffic import Traffic
from tests.upstream import Upstream

pytestmark = pytest.mark.integration

NAMESPACE = "shop"
FAST = {"window": "10s", "for": "0s"}  # what a busy service that pages in seconds sets


@dataclass(frozen=True)
class Scenario:
    alerts: dict[str, Any]
    settings: dict[str, Any]
    path: str
    fires: frozenset[str]
    dead_upstream: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


SCENARIOS = {
    # Every request fails: the error-rate alert and both SLO burn-rate alerts.
    "failing": Scenario(
        {**FAST, "slo": {"objective": 99, "window": "30d"}},
        {"circuitBreaker": {"consecutiveFailures": 0}, "retries": {"attempts": 0}},
        "/status/500",
        frozenset({"RampartHighErrorRate", "RampartSLOBurnRateFast", "RampartSLOBurnRateSlow"}),
    ),
    # Every request takes 300 ms against a 100 ms p95 target.
    "slow": Scenario(
        {**FAST, "latencyP95": "100ms"}, {}, "/delay?ms=300", frozenset({"RampartHighLatencyP95"})
    ),
    # The application is gone: the breaker opens and stays open or half-open.
    "unreachable": Scenario(
        {**FAST, "circuitOpenFor": "5s"},
        {
            "circuitBreaker": {"consecutiveFailures": 1, "openFor": "2s"},
            "retries": {"attempts": 0},
        },
        "/app",
        frozenset({"RampartCircuitOpen", "RampartHighErrorRate"}),
        dead_upstream=True,
    ),
    # Healthy, with an SLO and a tight latency target it meets: nothing fires.
    "healthy": Scenario(
        {**FAST, "latencyP95": "250ms", "slo": {"objective": 99, "window": "30d"}},
        {},
        "/app",
        frozenset(),
    ),
}


def resource(name: str, alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}"},
        "spec": {"image": "ghcr.io/acme/shop:1", "alerts": alerts},
    }


def test_each_sidecar_alert_fires_from_a_real_sidecar_and_only_for_its_service(
    upstream: Upstream, tmp_path: Path
) -> None:
    sidecars: dict[str, Sidecar] = {}
    jobs: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    # A port held but never listened on: connections are refused, and no other
    # process can take it meanwhile.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{held.getsockname()[1]}"
    try:
        for name, scenario in SCENARIOS.items():
            target = dead if scenario.dead_upstream else upstream.url
            sidecars[name] = Sidecar(tmp_path, scenario.settings, target)
            rendered = render(resource(name, scenario.alerts), OperatorSettings())
            kinds = {m["kind"]: m for m in rendered}
            pods = kinds["Deployment"]["spec"]["template"]
            address = f"127.0.0.1:{sidecars[name].admin_port}"
            jobs.append(pod_monitor_job(kinds["PodMonitor"], pods, f"{name}-0", address))
            rules += kinds["PrometheusRule"]["spec"]["groups"]
        prometheus = Prometheus(tmp_path, {}, rules=rules, jobs=jobs)
        traffic = [
            Traffic(sidecars[name].url, [scenario.path], pause=0.02)
            for name, scenario in SCENARIOS.items()
        ]
        try:
            for flow in traffic:
                flow.__enter__()
            expected = {
                (name, alert) for name, scenario in SCENARIOS.items() for alert in scenario.fires
            }
            seen: set[tuple[str, str]] = set()

            def all_fired() -> bool:
                for alert in prometheus.alerts():
                    labels = alert["labels"]
                    # The labels routing and the rollback match on, and a severity.
                    assert labels["namespace"] == NAMESPACE, labels
                    assert labels["severity"] in ("critical", "warning"), labels
                    seen.add((labels["hardenedservice"], labels["alertname"]))
                return expected <= seen

            try:
                # RampartCircuitOpen holds for 1m by design: the longest wait here.
                wait_until(all_fired, timeout=120, interval=1)
            except AssertionError:
                raise AssertionError(f"missing: {expected - seen}; firing: {seen}") from None
            assert seen == expected, seen - expected
        finally:
            for flow in traffic:
                flow.__exit__()
            prometheus.stop()
    finally:
        for sidecar in sidecars.values():
            sidecar.stop()
        held.close()
