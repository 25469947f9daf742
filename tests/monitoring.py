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
    ) -> None:
        assert PROMETHEUS, "prometheus is not installed (scripts/install installs it)"
        self.tmp, self.alertmanager, self.honor_labels = tmp, alertmanager, honor_labels
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
                }
            ],
        }
        if self.alertmanager:
            host = self.alertmanager.removeprefix("http://")
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [host]}]}]}
        (self.tmp / "prometheus.yml").write_text(yaml.safe_dump(config))

    def reload(
        self, targets: dict[str, dict[str, str]], rules: list[dict[str, Any]], interval: str
    ) -> None:
        self.configure(targets, rules, interval)
        self.proc.send_signal(signal.SIGHUP)

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, Any]] = json.load(response)["data"]["result"]
            return result


class Alertmanager(Process):
    """Routes every alert at once to a webhook (with a bearer token), if one is given."""

    def __init__(self, tmp: Path, webhook: str | None = None, token: str = "") -> None:
        assert ALERTMANAGER, "alertmanager is not installed (scripts/install installs it)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        receiver: dict[str, Any] = {"name": "rampart"}
        if webhook:
            receiver["webhook_configs"] = [
                {
                    "url": webhook,
                    "send_resolved": True,
                    "http_config": {"authorization": {"credentials": token}},
                }
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
