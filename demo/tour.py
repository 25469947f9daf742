"""Rampart's main job, end to end, on a local cluster: what ``scripts/run-demo`` runs.

The same parts a cluster user gets, on this machine:

* the local control plane (``e2e/localcluster.py``: kube-apiserver, etcd,
  controllers, scheduler, kwok), the chart installed with ``helm install`` in
  its out-of-cluster mode and ``rampart-operator run`` as the chart's
  ServiceAccount (``e2e/rampart.py``);
* a real Alertmanager routing to the operator's receiver, and a real
  Prometheus loaded (by SIGHUP, as prometheus-operator does) with the
  PrometheusRule the operator rendered and scraping the sidecars with the
  interval and labels its PodMonitor gives them;
* for each track (stable, canary) the demo application behind a real
  ``rampart-sidecar`` configured by the ConfigMap the operator rendered.

kwok runs no container, so two things stand in for the kubelet and the
Service: ``Kubelet`` starts each track's application at the version its
Deployment's image names once the Deployment has ready pods, and ``Traffic``
sends requests to each track in proportion to its ready pods, as a Service
over both would. Everything the tour reports it reads from the cluster,
Prometheus and the audit log.

Stages: ``accepted`` (the HardenedService, its children, Ready), ``promoted``
(a new version walked through the canary steps with analysis, then promoted),
``rolled-back`` (a broken version: the error-rate alert goes pending, fires,
and the operator rolls the canary back).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from e2e.localcluster import Cluster, local_cluster, timestamp, wait_for
from e2e.rampart import ALERT_TOKEN, OPERATOR_USER, install_rampart
from tests import monitoring
from tests.conftest import Sidecar, free_port
from tests.monitoring import Alertmanager

from .narrator import Narrator

STAGES = ("accepted", "promoted", "rolled-back")
NAMESPACE, NAME = "demo", "web"
IMAGE = "ghcr.io/rampart-dev/demo"
# What each demo image does: the share of requests it fails.
VERSIONS = {"1.0.0": 0.0, "2.0.0": 0.0, "3.0.0": 0.7}
APP_PORT = 8080
ANALYSIS = {"errorRate": 0.05, "latencyP95": "250ms"}


def hardened_service(prometheus_url: str, version: str = "1.0.0") -> dict[str, Any]:
    """The demo's HardenedService: production's shape with the timings in seconds."""
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "image": f"{IMAGE}:{version}",
            "replicas": 4,
            "port": APP_PORT,
            # Paged within seconds: rates over 10 s, 5 s over the threshold.
            "alerts": {"errorRate": 0.05, "latencyP95": "500ms", "window": "10s", "for": "5s"},
            "monitoring": {"interval": "1s"},
            "canary": {
                "steps": [{"weight": 25, "pause": "5s"}, {"weight": 50, "pause": "5s"}],
                "analysis": {
                    "interval": "8s",
                    "window": "8s",
                    # Six failed checks (48 s, each over 8 s of the step's own traffic):
                    # the alert (about 15 s) is what ends a broken version here, as the
                    # tour means to show. 70% failing is about a third after the
                    # sidecar's retries: at 25% of the traffic, 8% of all requests.
                    "failureLimit": 6,
                    "progressDeadline": "90s",
                    "minRequests": 10,
                    "prometheus": {"url": prometheus_url},
                    "thresholds": ANALYSIS,
                },
                "rollbackOnAlerts": True,
                "bakeWindow": "0s",
            },
        },
    }


class Prometheus(monitoring.Prometheus):
    """A real Prometheus whose rules and targets come from the cluster (``reload``)."""

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as answer:  # noqa: S310
            return json.load(answer)["data"]

    def alert(self, name: str) -> dict[str, Any] | None:
        """The alert's state as Prometheus has it (pending or firing), None when inactive."""
        for alert in self.get("/api/v1/alerts")["alerts"]:
            if alert["labels"].get("alertname") == name:
                return dict(alert)
        return None


class Track:
    """One track's pod as kwok cannot run it: the demo app behind a real sidecar."""

    def __init__(self, tmp: Path, track: str, settings: dict[str, Any]) -> None:
        self.track = track
        self.tmp = tmp
        self.app_port = free_port()
        self.version: str | None = None
        self.app: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None
        self.stopped = False
        self.sidecar = Sidecar(tmp, settings, f"http://127.0.0.1:{self.app_port}")

    def run(self, version: str | None) -> None:
        """The application at ``version`` (None: stopped), as a new pod would start it."""
        if version == self.version or self.stopped:
            return
        self.stop_app()
        self.version = version
        if version is None:
            return
        self.log = log = (self.tmp / f"app-{self.track}-{version}.log").open("wb")
        app = ["rampart_sidecar.demo", "--port", str(self.app_port)]
        error_rate = ["--error-rate", str(VERSIONS.get(version, 0.0))]
        self.app = subprocess.Popen(  # noqa: S603 - our own demo application
            [sys.executable, "-m", *app, *error_rate],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # The readiness probe: no traffic before the application listens.
        wait(f"the {self.track} application listening", self._listening, 15, every=0.05)

    def _listening(self) -> bool:
        if self.app is not None and self.app.poll() is not None:
            raise RuntimeError(f"the {self.track} application exited with {self.app.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.app_port), 1),
        ):
            return True
        return False

    def stop_app(self) -> None:
        if self.app is not None and self.app.poll() is None:
            self.app.terminate()
            self.app.wait(timeout=10)
        if self.log is not None:
            self.log.close()
        self.app, self.log = None, None

    def pids(self) -> list[int]:
        return [p.pid for p in (self.app, self.sidecar.proc) if p is not None]

    def stop(self) -> None:
        self.stopped = True
        self.stop_app()
        self.sidecar.stop()


@dataclass
class Pods:
    """What the Deployments say, read by the kubelet stand-in for the traffic."""

    ready: dict[str, int] = field(default_factory=lambda: {"stable": 0, "canary": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)


def version_of(deployment: dict[str, Any] | None) -> str | None:
    if not deployment:
        return None
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["name"] == "app":
            return str(container["image"]).rpartition(":")[2]
    return None


class Kubelet(threading.Thread):
    """Runs each track's application at the version of its Deployment's ready pods."""

    def __init__(self, cluster: Cluster, tracks: dict[str, Track], pods: Pods) -> None:
        super().__init__(daemon=True)
        self.cluster, self.tracks, self.pods = cluster, tracks, pods
        self.stopping = threading.Event()

    def run(self) -> None:
        names = {"stable": NAME, "canary": f"{NAME}-canary"}
        while not self.stopping.wait(0.3):
            for track, name in names.items():
                try:
                    deployment = self.cluster.get("deployment", name, NAMESPACE)
                except AssertionError:
                    continue  # the API server is going away
                try:
                    self.sync(track, deployment)
                except Exception as error:  # a kubelet keeps going
                    print(f"kubelet stand-in, {track}: {error}", file=sys.stderr)

    def sync(self, track: str, deployment: dict[str, Any] | None) -> None:
        ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
        version = version_of(deployment) if ready else None
        if version != self.tracks[track].version:
            # New pods: out of the Service's endpoints until they answer.
            with self.pods.lock:
                self.pods.ready[track] = 0
            self.tracks[track].run(version)
        with self.pods.lock:
            self.pods.ready[track] = ready


class Traffic(threading.Thread):
    """Requests to each track in proportion to its ready pods, as a Service would send them."""

    def __init__(self, tracks: dict[str, Track], pods: Pods, per_second: float = 60) -> None:
        super().__init__(daemon=True)
        self.tracks, self.pods, self.pause = tracks, pods, 1 / per_second
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:
        while not self.stopping.wait(self.pause):
            with self.pods.lock:
                ready = dict(self.pods.ready)
            total = sum(ready.values())
            if not total:
                continue
            track = "canary" if random.random() < ready["canary"] / total else "stable"
            try:
                url = self.tracks[track].sidecar.url + "/"
                with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310
                    answer.read()
            except (urllib.error.URLError, OSError):
                pass  # a 5xx is what the broken version is for
            self.sent += 1


def stopped(worker: Kubelet | Traffic) -> None:
    worker.stopping.set()
    worker.join(timeout=30)


@dataclass
class Demo:
    """What is up once the tour is over, to look around."""

    cluster: Cluster
    prometheus: Prometheus
    alertmanager: Alertmanager
    tracks: dict[str, Track]
    operator_pid: int

    def pids(self) -> dict[str, int]:
        """Every process the demo started, by name."""
        found = {f"cluster {name}": pid for name, pid in self.cluster.pids.items()}
        found["operator"] = self.operator_pid
        found["prometheus"] = self.prometheus.proc.pid
        found["alertmanager"] = self.alertmanager.proc.pid
        for name, track in self.tracks.items():
            for index, pid in enumerate(track.pids()):
                found[f"{name} {index}"] = pid
        return found


def hsvc(cluster: Cluster) -> dict[str, Any]:
    return cluster.get("hardenedservice", NAME, NAMESPACE) or {}


def canary_status(cluster: Cluster) -> dict[str, Any]:
    return dict((hsvc(cluster).get("status") or {}).get("canary") or {})


def ready_condition(resource: dict[str, Any]) -> bool:
    conditions = (resource.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def wait(what: str, condition: Callable[[], Any], timeout: float, every: float = 0.3) -> Any:
    return wait_for(f"the demo: {what}", condition, timeout, every)


def set_version(cluster: Cluster, version: str) -> None:
    patch = {"spec": {"canary": {"image": f"{IMAGE}:{version}"}}}
    cluster.kubectl(
        "patch", "hardenedservice", NAME, "-n", NAMESPACE, "--type=merge", "-p", json.dumps(patch)
    )


def shown(key: str, value: float) -> str:
    if key == "errorRate":
        return f"{value:.1%}"
    if key == "latencyP95":
        return f"{value * 1000:.0f} ms"
    return f"{value:.0f}"


def narrate_rollout(
    cluster: Cluster, narrator: Narrator, done: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """Steps, weights and each analysis, as the status says them, until ``done``."""
    seen_weight, seen_analysis = None, None
    window = 8.0  # the analysis window, for the request rate
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = canary_status(cluster)
        weight = state.get("weight")
        if weight and weight != seen_weight and state.get("phase") == "Progressing":
            seen_weight = weight
            step = int(state.get("step", 0)) + 1
            narrator.say(f"step {step}: {weight}% of traffic to the canary")
        analysis = state.get("analysis") or {}
        if analysis and analysis.get("time") != seen_analysis:
            seen_analysis = analysis.get("time")
            values = analysis.get("values") or {}
            parts = [f"{values.get('requests', 0) / window:.1f} req/s"]
            for key, limit in ANALYSIS.items():
                if key in values:
                    most = shown(key, limit) if isinstance(limit, float) else limit
                    parts.append(f"{key} {shown(key, values[key])} (max {most})")
            narrator.say(f"analysis {analysis.get('result', '').lower()}: " + ", ".join(parts))
        if done(state):
            return state
        time.sleep(0.3)
    raise TimeoutError(f"the rollout did not finish within {timeout:.0f} s")


def fired_at(alertmanager: str) -> datetime.datetime | None:
    with urllib.request.urlopen(alertmanager + "/api/v2/alerts", timeout=5) as answer:  # noqa: S310
        alerts = json.load(answer)
    for alert in alerts:
        labels = alert["labels"]
        if (
            labels.get("alertname") == "RampartHighErrorRate"
            and labels.get("hardenedservice") == NAME
        ):
            return timestamp(alert["startsAt"])
    return None


def rollback_written(cluster: Cluster, since: datetime.datetime) -> datetime.datetime | None:
    """When the operator's first write of the canary Deployment since the alert fired
    (scaling it to 0) was answered, from the audit log."""
    for event in cluster.requests(OPERATOR_USER, since, frozenset({"patch"})):
        ref = event.get("objectRef") or {}
        if ref.get("resource") == "deployments" and ref.get("name") == f"{NAME}-canary":
            return timestamp(event["stageTimestamp"])
    return None


def tour(workdir: Path, narrator: Narrator, until: str, stack: contextlib.ExitStack) -> Demo:
    narrator.stage("A local Kubernetes control plane, Rampart installed")
    cluster = stack.enter_context(local_cluster(workdir, nodes=3, log=narrator.detail))
    # Alertmanager calls the operator's receiver, and the operator also polls it
    # (what a lost webhook costs is one poll), as docs/canary.md sets them up.
    alertmanager_port = free_port()
    operator = install_rampart(
        cluster,
        workdir,
        env={
            "RAMPART_ALERTMANAGER_URL": f"http://127.0.0.1:{alertmanager_port}",
            "RAMPART_ALERT_POLL_INTERVAL": "2",
        },
    )
    stack.callback(operator.stop)
    # The receiver serves HTTPS with the webhook server's certificate.
    alertmanager = Alertmanager(
        workdir, operator.alert_url, ALERT_TOKEN, operator.alert_ca(), alertmanager_port
    )
    stack.callback(alertmanager.stop)
    prometheus = Prometheus(workdir, {}, [], alertmanager.url)
    stack.callback(prometheus.stop)
    narrator.detail(
        f"operator running as the chart's ServiceAccount; Prometheus {prometheus.url}, "
        f"Alertmanager {alertmanager.url}"
    )

    narrator.stage(f"HardenedService {NAMESPACE}/{NAME} at version 1.0.0")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.apply(hardened_service(prometheus.url))
    narrator.say("accepted by the API server and the validating webhook")
    children = wait("the children", lambda: (hsvc(cluster).get("status") or {}).get("children"), 60)
    narrator.say("children: " + ", ".join(f"{c['kind']} {c['name']}" for c in children))
    sidecar_yaml = (cluster.get("configmap", f"{NAME}-sidecar", NAMESPACE) or {})["data"]
    settings = yaml.safe_load(sidecar_yaml["sidecar.yaml"])
    tracks = {track: Track(workdir, track, settings) for track in ("stable", "canary")}
    for track in tracks.values():
        stack.callback(track.stop)
    rule = cluster.get("prometheusrule", NAME, NAMESPACE) or {}
    monitor = cluster.get("podmonitor", NAME, NAMESPACE) or {}
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    # The labels the PodMonitor's relabelings give each track's pods.
    targets = {
        f"127.0.0.1:{t.sidecar.admin_port}": {
            "namespace": NAMESPACE,
            "hardenedservice": NAME,
            "track": name,
            "pod": f"{NAME}-{name}",
        }
        for name, t in tracks.items()
    }
    prometheus.reload(targets, rule["spec"]["groups"], endpoint.get("interval", "30s"))
    count = sum(len(group["rules"]) for group in rule["spec"]["groups"])
    narrator.detail(
        f"Prometheus loaded the rendered PrometheusRule ({count} rules) and scrapes both "
        f"tracks' sidecars every {endpoint.get('interval')}, labelled as the PodMonitor does"
    )
    pods = Pods()
    kubelet, traffic = Kubelet(cluster, tracks, pods), Traffic(tracks, pods)
    for worker in (kubelet, traffic):
        worker.start()
        stack.callback(stopped, worker)  # before the tracks: no app started after
    wait("Ready", lambda: ready_condition(hsvc(cluster)), 90)
    stable = (cluster.get("deployment", NAME, NAMESPACE) or {}).get("status") or {}
    narrator.say(
        f"Ready: {stable.get('readyReplicas', 0)} of {stable.get('replicas', 0)} pods ready "
        "(the Deployment controller, the scheduler and kwok)"
    )
    demo = Demo(cluster, prometheus, alertmanager, tracks, operator.process.pid)
    if until == "accepted":
        return demo

    narrator.stage("Version 2.0.0 through the canary")
    set_version(cluster, "2.0.0")
    final = narrate_rollout(
        cluster, narrator, lambda s: s.get("phase") in ("Succeeded", "RolledBack"), 120
    )
    narrator.say(f"{final['phase']}: {final.get('message', '')}")
    if final["phase"] != "Succeeded":
        raise RuntimeError(f"version 2.0.0 was not promoted: {final.get('message')}")
    if until == "promoted":
        return demo

    narrator.stage("Version 3.0.0, which fails 70% of its requests")
    set_version(cluster, "3.0.0")
    states: dict[str, dict[str, Any]] = {}

    def alert_or_done(state: dict[str, Any]) -> bool:
        alert = prometheus.alert("RampartHighErrorRate")
        if alert and alert["state"] not in states:
            states[alert["state"]] = alert
            value = float(alert["value"])
            narrator.say(f"alert RampartHighErrorRate {alert['state']} (error rate {value:.1%})")
        return state.get("phase") == "RolledBack"

    try:
        final = narrate_rollout(cluster, narrator, alert_or_done, 120)
    except TimeoutError:
        # What each part saw, for whoever reads why the tour stopped here.
        with urllib.request.urlopen(alertmanager.url + "/api/v2/alerts", timeout=5) as answer:  # noqa: S310
            narrator.detail(f"Alertmanager's alerts: {answer.read().decode()[:2000]}")
        notified = operator.metric("rampart_operator_alert_notifications_total")
        narrator.detail(f"the operator's alert notifications: {notified}")
        narrator.detail(f"the canary's status: {canary_status(cluster)}")
        raise
    narrator.say(f"RolledBack: {final.get('message', '')}")
    # When Prometheus fired it: the startsAt it sent Alertmanager (its FiredAt).
    firing = wait("the alert in Alertmanager", lambda: fired_at(alertmanager.url), 10)
    written = wait("the rollback in the audit log", lambda: rollback_written(cluster, firing), 10)
    took = (written - firing).total_seconds()
    narrator.say(
        f"alert fired -> canary scaled to 0 written: {took * 1000:.0f} ms "
        "(Alertmanager's startsAt to the operator's write, in the audit log)"
    )
    return demo


def look_around(demo: Demo, narrator: Narrator) -> None:
    kubeconfig = demo.cluster.kubeconfig
    narrator.stage("Look around (Ctrl-C stops and removes everything)")
    narrator.say(f"export KUBECONFIG={kubeconfig}")
    narrator.say(f"{Path('.tools/bin/kubectl')} get hsvc -A")
    narrator.say(f"{Path('.tools/bin/kubectl')} -n {NAMESPACE} describe hsvc {NAME}")
    narrator.say(f".venv/bin/rampart-operator abort {NAME} -n {NAMESPACE}")
    narrator.say(f"Prometheus     {demo.prometheus.url}/alerts")
    narrator.say(f"Alertmanager   {demo.alertmanager.url}")
    for name, track in demo.tracks.items():
        narrator.say(
            f"{name} sidecar  {track.sidecar.url}/  admin {track.sidecar.admin_url}/metrics"
        )


@contextlib.contextmanager
def running(workdir: Path, narrator: Narrator, until: str) -> Iterator[Demo]:
    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        demo = tour(workdir, narrator, until, stack)
        narrator.detail(f"the tour took {time.monotonic() - started:.0f} s")
        yield demo
        narrator.detail("stopping everything the demo started")
