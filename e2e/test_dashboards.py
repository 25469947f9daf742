"""Every dashboard panel, every alert it points to, against the real programs.

One HardenedService on the real control plane, with a canary analysed by
Prometheus, an SLO, a Redis cache and a PostgreSQL backup. Its "pods" are
real sidecars (stable and canary) in front of a test application; a real
Prometheus scrapes them through the relabelling of the PodMonitor the
operator created (for pods of the Deployments it created), the operator
through the chart's ServiceMonitor, and the Pushgateway the backup agent
pushed to, run as the operator's CronJob runs it. Prometheus evaluates the
PrometheusRule the operator created. Then each query of each shipped
dashboard (dashboards/*.json, variables substituted) must return data, and
the alert the traffic breaks must fire with the labels routing relies on.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from tests.backup.cronjob import run_job_container
from tests.chart import find, manifests
from tests.conftest import PostgresServer, RedisServer, Sidecar
from tests.monitoring import (
    Prometheus,
    Pushgateway,
    pod_monitor_job,
    service_monitor_job,
)
from tests.traffic import Traffic
from tests.upstream import Upstream

from rampart_operator.render.drill import TARGETS
from rampart_operator.render.names import OWNER_LABEL, TRACK_LABEL

from .conftest import Operator
from .localcluster import Cluster
from .test_control_plane import condition

pytestmark = pytest.mark.integration

NAME = "shop"
ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def secret(local: Cluster, namespace: str, name: str, key: str, value: str) -> None:
    local.kubectl(
        "create", "secret", "generic", name, "-n", namespace, f"--from-literal={key}={value}"
    )


def service(namespace: str, prometheus: Prometheus, pushgateway: Pushgateway) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "image": "ghcr.io/acme/shop:1",
            "replicas": 2,
            "sidecar": {
                "cache": {
                    "memory": {"maxEntries": 100},
                    "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
                }
            },
            "alerts": {"window": "10s", "for": "0s", "slo": {"objective": 99, "window": "1h"}},
            "canary": {
                "steps": [{"weight": 50, "pause": "3s"}, {"weight": 100}],
                "bakeWindow": "0s",
                "analysis": {
                    "interval": "1s",
                    "window": "4s",
                    "failureLimit": 2,
                    "minRequests": 3,
                    "progressDeadline": "120s",
                    "prometheus": {"url": prometheus.url},
                    "thresholds": {"errorRate": 0.5, "latencyP95": "5s"},
                },
            },
            "backup": {
                "schedule": "0 2 * * *",
                "pushgateway": pushgateway.url,
                "sources": [
                    {"name": "db", "postgres": {"urlSecretRef": {"name": "db", "key": "url"}}}
                ],
                "destination": {"pvc": "backups"},
                "encryption": {"keySecretRef": {"name": "backup-key", "key": "key"}},
                "drill": {"schedule": "30 4 * * *", "rto": "15m", "rpo": "26h"},
            },
        },
    }


def the_canary(local: Cluster, namespace: str) -> dict[str, Any]:
    found = local.get("hardenedservice", NAME, namespace) or {}
    return dict((found.get("status") or {}).get("canary") or {})


def set_canary_image(local: Cluster, namespace: str, image: str) -> None:
    patch = {"spec": {"canary": {"image": image}}}
    local.kubectl(
        "patch", "hardenedservice", NAME, "-n", namespace, "--type=merge", "-p", json.dumps(patch)
    )


def substituted(expr: str, namespace: str) -> str:
    """A panel's query as Grafana sends it with this service picked."""
    return (
        expr.replace("$namespace", namespace)  # a DNS label: nothing to escape
        .replace("$hardenedservice", NAME)
        .replace("$__rate_interval", "15s")
        .replace("$__range", "15m")
    )


def every_query(namespace: str) -> dict[str, str]:
    """``dashboard / panel [ref]`` → PromQL, for every panel target, annotation and variable."""
    queries: dict[str, str] = {}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets") or []:
                where = f"{board['title']} / {panel['title']} [{target['refId']}]"
                queries[where] = substituted(target["expr"], namespace)
        for annotation in board["annotations"].get("list", []):
            if "expr" in annotation:
                where = f"{board['title']} / annotation {annotation['name']}"
                queries[where] = substituted(annotation["expr"], namespace)
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                # label_values(series, label): Grafana lists the label's values.
                found = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
                assert found, variable["query"]
                series, label = found.groups()
                where = f"{board['title']} / variable {variable['name']}"
                queries[where] = f"group by ({label}) ({substituted(series, namespace)})"
    return queries


def test_every_dashboard_query_returns_data_from_the_real_programs(
    local: Cluster, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    upstream = Upstream()
    upstream.start()
    redis = RedisServer(tmp_path)
    postgres = PostgresServer()
    drill_target = PostgresServer()  # the drill pod's own throwaway server
    postgres.sql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)")
    pushgateway = Pushgateway(tmp_path)
    prometheus = Prometheus(tmp_path, {}, interval="1s")
    settings = {
        "timeouts": {"request": "1s"},
        "retries": {"attempts": 2, "perTryTimeout": "1s", "retryOn": ["gateway-error"]},
        "circuitBreaker": {"consecutiveFailures": 0},
        "cache": {"ttl": "0s", "memory": {"maxEntries": 100}, "redis": {"url": redis.url}},
    }
    # The stable track's limit turns some of its traffic away (429, "rate-limited").
    limited = {**settings, "rateLimit": {"requestsPerSecond": 40, "burst": 20}}
    stable = Sidecar(tmp_path, limited, upstream.url)
    canary = Sidecar(tmp_path, settings, upstream.url)
    try:
        secret(local, namespace, "redis", "url", redis.url)
        secret(local, namespace, "db", "url", postgres.url)
        secret(local, namespace, "backup-key", "key", os.urandom(32).hex())
        local.apply(service(namespace, prometheus, pushgateway))
        local.wait_for(
            "version 1 Ready",
            lambda: (
                condition(local.get("hardenedservice", NAME, namespace), "Ready").get("status")
                == "True"
            ),
            timeout=60,
        )

        # What the operator created is what Prometheus is configured from.
        monitor = local.get("podmonitor", NAME, namespace)
        rule = local.get("prometheusrule", NAME, namespace)
        assert monitor is not None
        assert rule is not None
        # A pod as admitted (the sidecar may have been injected then), for each track.
        stable_pod = a_pod(local, namespace, "stable")
        stable_admin = f"127.0.0.1:{stable.admin_port}"
        chart = manifests({"metrics": {"serviceMonitor": {"enabled": True}}})
        jobs = [
            pod_monitor_job(monitor, stable_pod, stable_pod["metadata"]["name"], stable_admin),
            service_monitor_job(
                find(chart, "ServiceMonitor"),
                find(chart, "Service"),
                "rampart-0",
                urllib.parse.urlsplit(operator.metrics_url).netloc,
            ),
            {
                "job_name": "pushgateway",
                "honor_labels": True,  # a Pushgateway's series keep the labels pushed
                "static_configs": [{"targets": [pushgateway.url.removeprefix("http://")]}],
            },
        ]
        prometheus.reload({}, rule["spec"]["groups"], "1s", jobs)

        def scrape_the_canary_too() -> None:
            canary_pod = a_pod(local, namespace, "canary")
            address = f"127.0.0.1:{canary.admin_port}"
            more = pod_monitor_job(monitor, canary_pod, canary_pod["metadata"]["name"], address)
            prometheus.reload({}, rule["spec"]["groups"], "1s", [*jobs, more])

        # The backup and its restore drill, as the operator's CronJobs run them.
        backup_job = local.get("cronjob", f"{NAME}-backup-db", namespace)
        drill_job = local.get("cronjob", f"{NAME}-drill-db", namespace)
        assert backup_job is not None
        assert drill_job is not None
        done = run_job_container(backup_job, {("db", "url"): postgres.url}, tmp_path / "backup")
        assert done.returncode == 0, done.stderr
        drilled = run_job_container(
            drill_job, {}, tmp_path / "backup", local={TARGETS["postgres"]: drill_target.url}
        )
        assert drilled.returncode == 0, drilled.stderr

        healthy = ["/app", "/c/page?cc=max-age%3D60", "/c/other?cc=max-age%3D60"]
        with Traffic(stable.url, healthy), Traffic(canary.url, healthy):
            # Healthy: the service's own alerts stay quiet.
            prometheus.wait_for_series(
                f'rampart:sli_error_ratio:rate5m{{namespace="{namespace}"}}', timeout=60
            )
            assert not firing(prometheus, namespace)

            # A canary, analysed and promoted; then another, aborted.
            set_canary_image(local, namespace, "ghcr.io/acme/shop:2")
            local.wait_for("a canary pod", lambda: pods(local, namespace, "canary"))
            scrape_the_canary_too()
            local.wait_for(
                "the canary promoted",
                lambda: the_canary(local, namespace).get("phase") == "Succeeded",
                timeout=120,
            )
            set_canary_image(local, namespace, "ghcr.io/acme/shop:3")
            local.wait_for(
                "the next canary started",
                lambda: the_canary(local, namespace).get("phase") == "Progressing",
            )
            local.kubectl(
                "annotate", "hardenedservice", NAME, "-n", namespace, "rampart.dev/abort=true"
            )
            local.wait_for(
                "the canary rolled back",
                lambda: the_canary(local, namespace).get("phase") == "RolledBack",
            )

            # The application fails half its requests and times out on some: the
            # error-rate alert fires; retries, timeouts and rejections count.
            failing = ["/app", "/status/503", "/app", "/delay?ms=1500", "/app"]
            upstream.error_rate = 0.5
            with Traffic(stable.url, failing):
                alert = prometheus.wait_for_alert("RampartHighErrorRate", namespace, timeout=60)
                assert alert["labels"]["hardenedservice"] == NAME
                assert alert["labels"]["severity"] == "critical"
                redis.kill()  # Redis gone: the sidecars count backend errors and go on
                with Traffic(stable.url, [f"/c/after-{i}?cc=max-age%3D60" for i in range(50)]):
                    queries = every_query(namespace)
                    left: dict[str, str] = {}

                    def answered() -> bool:
                        left.clear()
                        left.update(without_data(prometheus, queries))
                        return not left

                    try:
                        local.wait_for("every query answered", answered, timeout=90, every=2)
                    except AssertionError:
                        raise AssertionError(json.dumps(left, indent=1)) from None
                    assert len(queries) > 40
    finally:
        for process in (stable, canary):
            process.stop()
        prometheus.stop()
        pushgateway.stop()
        postgres.stop()
        drill_target.stop()
        redis.kill()
        upstream.close()


def pods(local: Cluster, namespace: str, track: str) -> list[dict[str, Any]]:
    selector = f"{OWNER_LABEL}={NAME},{TRACK_LABEL}={track}"
    listed = local.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return list(json.loads(listed)["items"])


def a_pod(local: Cluster, namespace: str, track: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = local.wait_for(
        f"a {track} pod", lambda: pods(local, namespace, track)
    )
    return found[0]


def firing(prometheus: Prometheus, namespace: str) -> list[dict[str, Any]]:
    return [a for a in prometheus.alerts() if a["labels"].get("namespace") == namespace]


def without_data(prometheus: Prometheus, queries: dict[str, str]) -> dict[str, str]:
    """The queries that error or answer nothing, with the reason."""
    missing = {}
    for where, promql in queries.items():
        try:
            if not prometheus.query(promql):
                missing[where] = f"no data: {promql}"
        except urllib.error.HTTPError as error:
            missing[where] = f"{error.code} {error.read().decode(errors='replace')}: {promql}"
    return missing
