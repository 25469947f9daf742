"""Real Prometheus and Alertmanager processes for tests, on loopback ports, in a temp dir."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import free_port, wait_until

PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
# A rule that fires as soon as a canary's sidecar answers any 5xx: the canary
# rollback tests' alert, grouped by the labels the operator's receiver reads.
CANARY_SERVER_ERRORS = {
    "alert": "CanaryServerErrors",
    "expr": "sum by (namespace, hardenedservice) (rate("
    'rampart_http_request_duration_seconds_count{code=~"5.."}[3s])) > 0',
    "labels": {"severity": "critical"},
}


class Process:
    """A server process whose output goes to a file, stopped (and reaped) by ``stop``."""

    def __init__(self, name: str, argv: list[str], log: Path, ready_url: str) -> None:
        self.name = name
        self.log_path = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: self._ready(ready_url), timeout=30, interval=0.1)
        except AssertionError:
            self.stop()
            raise AssertionError(f"{name} did not start:\n{self.logs()}") from None

    def _ready(self, url: str) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Prometheus(Process):
    """Scrapes ``targets`` (address → target labels) every ``interval``; evaluates
    ``rules`` every second; ``reload`` changes both, as prometheus-operator does."""

    def __init__(
        self,
        tmp: Path,
        targets: dict[str, dict[str, str]],
        rules: list[dict[str, Any]] | None = None,
        alertmanager: str | None = None,
        honor_labels: bool = False,
        interval: str = "1s",
        jobs: list[dict[str, Any]] | None = None,
    ) -> None:
        assert PROMETHEUS, "prometheus is not installed (scripts/install installs it)"
        self.tmp, self.alertmanager, self.honor_labels = tmp, alertmanager, honor_labels
        self.jobs = jobs or []  # whole scrape configs, e.g. from pod_monitor_job
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.configure(targets, rules or [], interval)
        super().__init__(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            tmp / "prometheus.log",
            self.url + "/-/ready",
        )

    def configure(
        self, targets: dict[str, dict[str, str]], rules: list[dict[str, Any]], interval: str
    ) -> None:
        (self.tmp / "rules.yaml").write_text(yaml.safe_dump({"groups": rules}))
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": "1s"},
            "rule_files": [str(self.tmp / "rules.yaml")],
            "scrape_configs": [
                {
                    "job_name": "sidecars",
                    # A Pushgateway's series keep the labels they were pushed with.
                    "honor_labels": self.honor_labels,
                    "static_configs": [
                        {"targets": [address], "labels": labels}
                        for address, labels in targets.items()
                    ],
                },
                *self.jobs,
            ],
        }
        if self.alertmanager:
            host = self.alertmanager.removeprefix("http://")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(config))

    def reload(
        self,
        targets: dict[str, dict[str, str]],
        rules: list[dict[str, Any]],
        interval: str,
        jobs: list[dict[str, Any]] | None = None,
    ) -> None:
        if jobs is not None:
            self.jobs = jobs
        self.configure(targets, rules, interval)
        self.proc.send_signal(signal.SIGHUP)

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts firing now (pending ones are left out)."""
        with urllib.request.urlopen(self.url + "/api/v1/alerts", timeout=5) as response:
            found: list[dict[str, Any]] = json.load(response)["data"]["alerts"]
        return [a for a in found if a["state"] == "firing"]

    def wait_for_series(self, promql: str, timeout: float) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        def answered() -> bool:
            found[:] = self.query(promql)
            return bool(found)

        try:
            wait_until(answered, timeout=timeout, interval=0.5)
        except AssertionError:
            raise AssertionError(f"no {promql} within {timeout} s; {self.targets()}") from None
        return found

    def targets(self) -> str:
        """Each target, its health and labels, or why it was dropped: for a failure."""
        with urllib.request.urlopen(self.url + "/api/v1/targets?state=any", timeout=5) as answer:
            data = json.load(answer)["data"]
        active = [
            f"{t['scrapePool']} {t['health']} {t.get('lastError') or ''} {t['labels']}"
            for t in data["activeTargets"]
        ]
        dropped = [str(t.get("discoveredLabels")) for t in data["droppedTargets"]]
        return f"targets: {active}; dropped: {dropped}"

    def wait_for_alert(self, name: str, namespace: str, timeout: float) -> dict[str, Any]:
        """The first firing alert ``name`` labelled with ``namespace``."""
        found: list[dict[str, Any]] = []

        def fired() -> bool:
            found[:] = [
                a
                for a in self.alerts()
                if a["labels"].get("alertname") == name
                and a["labels"].get("namespace") == namespace
            ]
            return bool(found)

        wait_until(fired, timeout=timeout, interval=0.5)
        return found[0]

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, Any]] = json.load(response)["data"]["result"]
            return result


class Alertmanager(Process):
    """Routes every alert at once to a webhook (with a bearer token), if one is given."""

    def __init__(
        self,
        tmp: Path,
        webhook: str | None = None,
        token: str = "",
        ca_file: Path | None = None,
        port: int | None = None,
    ) -> None:
        """``ca_file``: what the webhook's HTTPS certificate chains to."""
        assert ALERTMANAGER, "alertmanager is not installed (scripts/install installs it)"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        receiver: dict[str, Any] = {"name": "rampart"}
        if webhook:
            http_config: dict[str, Any] = {"authorization": {"credentials": token}}
            if ca_file is not None:
                http_config["tls_config"] = {"ca_file": str(ca_file)}
            receiver["webhook_configs"] = [
                {"url": webhook, "send_resolved": True, "http_config": http_config}
            ]
        config = {
            "route": {
                "receiver": "rampart",
                "group_by": ["namespace", "hardenedservice"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [receiver],
        }
        (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
        super().__init__(
            "alertmanager",
            [
                ALERTMANAGER,
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'am'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
            ],
            tmp / "alertmanager.log",
            self.url + "/-/ready",
        )

    def post_alert(self, labels: dict[str, str]) -> None:
        """What Prometheus does when a rule fires."""
        body = json.dumps([{"labels": labels}]).encode()
        request = urllib.request.Request(
            self.url + "/api/v2/alerts", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200


class Pushgateway(Process):
    """Keeps what batch jobs push, for Prometheus to scrape (with ``honor_labels``)."""

    def __init__(self, tmp: Path) -> None:
        assert PUSHGATEWAY, "the Pushgateway is not installed (scripts/install installs it)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "pushgateway",
            [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{self.port}"],
            tmp / "pushgateway.log",
            self.url + "/-/ready",
        )


def _relabelings(monitor_relabelings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A monitor's ``relabelings`` (camelCase) as Prometheus' ``relabel_configs``."""
    keys = {
        "sourceLabels": "source_labels",
        "targetLabel": "target_label",
        "replacement": "replacement",
        "regex": "regex",
        "action": "action",
        "separator": "separator",
        "modulus": "modulus",
    }
    return [{keys[k]: v for k, v in r.items()} for r in monitor_relabelings]


def _sanitized(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _keep_selected(role: str, selector: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "action": "keep",
            "source_labels": [
                f"__meta_kubernetes_{role}_label_{_sanitized(key)}",
                f"__meta_kubernetes_{role}_labelpresent_{_sanitized(key)}",
            ],
            "regex": f"({value});true",
        }
        for key, value in selector.items()
    ]


def pod_monitor_job(
    monitor: dict[str, Any], pod: dict[str, Any], pod_name: str, address: str
) -> dict[str, Any]:
    """The scrape job prometheus-operator generates for ``monitor`` (a PodMonitor), for
    one pod of template ``pod`` (a Deployment's ``spec.template``) at ``address``.

    The pod is given as Kubernetes service discovery would give it (its labels,
    namespace, name and container ports as ``__meta_kubernetes_*`` labels), and the
    job keeps or drops it and labels its series as prometheus-operator's generated
    configuration does: selector and port kept, then ``namespace``, ``container``,
    ``pod``, ``job``, ``endpoint``, then the monitor's own relabelings. Prometheus
    itself applies all of it, so a selector that misses the pod or a relabeling
    that reads a label the pod lacks shows up as missing or unlabelled series.
    """
    meta = monitor["metadata"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    spec = pod["spec"]
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    [(container, port)] = [
        (c["name"], p["name"])
        for c in containers
        for p in c.get("ports", [])
        if p.get("name") == endpoint["port"]
    ] or [("", "")]
    labels = {
        "__meta_kubernetes_namespace": meta["namespace"],
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_pod_container_name": container,
        "__meta_kubernetes_pod_container_port_name": port,
    }
    for key, value in (pod.get("metadata", {}).get("labels") or {}).items():
        labels[f"__meta_kubernetes_pod_label_{_sanitized(key)}"] = value
        labels[f"__meta_kubernetes_pod_labelpresent_{_sanitized(key)}"] = "true"
    return {
        "job_name": f"podMonitor/{meta['namespace']}/{meta['name']}/{pod_name}",
        "metrics_path": endpoint.get("path", "/metrics"),
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "static_configs": [{"targets": [address], "labels": labels}],
        "relabel_configs": [
            *_keep_selected("pod", monitor["spec"]["selector"]["matchLabels"]),
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": endpoint["port"],
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {
                "source_labels": ["__meta_kubernetes_pod_container_name"],
                "target_label": "container",
            },
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"target_label": "job", "replacement": f"{meta['namespace']}/{meta['name']}"},
            {"target_label": "endpoint", "replacement": endpoint["port"]},
            *_relabelings(endpoint.get("relabelings") or []),
        ],
    }


def service_monitor_job(
    monitor: dict[str, Any], service: dict[str, Any], pod_name: str, address: str
) -> dict[str, Any]:
    """As ``pod_monitor_job``, for a ServiceMonitor and one endpoint of ``service``."""
    meta = monitor["metadata"]
    [endpoint] = monitor["spec"]["endpoints"]
    ports = [p["name"] for p in service["spec"]["ports"] if p.get("name") == endpoint["port"]]
    labels = {
        "__meta_kubernetes_namespace": service["metadata"]["namespace"],
        "__meta_kubernetes_service_name": service["metadata"]["name"],
        "__meta_kubernetes_pod_name": pod_name,
        "__meta_kubernetes_endpoint_port_name": ports[0] if ports else "",
    }
    for key, value in (service["metadata"].get("labels") or {}).items():
        labels[f"__meta_kubernetes_service_label_{_sanitized(key)}"] = value
        labels[f"__meta_kubernetes_service_labelpresent_{_sanitized(key)}"] = "true"
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}",
        "metrics_path": endpoint.get("path", "/metrics"),
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "static_configs": [{"targets": [address], "labels": labels}],
        "relabel_configs": [
            *_keep_selected("service", monitor["spec"]["selector"]["matchLabels"]),
            {
                "action": "keep",
                "source_labels": ["__meta_kubernetes_endpoint_port_name"],
                "regex": endpoint["port"],
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
            {"target_label": "endpoint", "replacement": endpoint["port"]},
            *_relabelings(endpoint.get("relabelings") or []),
        ],
    }
