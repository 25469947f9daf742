"""A real Kubernetes control plane on this machine, in one call, without Docker.

    with local_cluster(workdir) as cluster:
        cluster.kubectl("get", "nodes")

starts, from the binaries ``scripts/build-controlplane`` built into
``.tools/bin``:

* etcd, its data in ``workdir``;
* kube-apiserver with a CA and serving certificate of its own (made here),
  service-account signing keys, ``Node,RBAC`` authorization, the default
  admission plugins, and an audit log of every write (``Cluster.writes``);
* kube-controller-manager with every default controller (garbage collector,
  Deployment, ReplicaSet, EndpointSlice, service-account tokens, ...);
* kube-scheduler;
* kwok, and a few fake Nodes it keeps Ready, on which scheduled Pods become
  Running and Ready without any container runtime;

waits until ``/readyz`` answers, the default ServiceAccount exists and the
Nodes are Ready, writes an admin kubeconfig, and stops everything on exit,
also when the body raised. No container ever runs: a Pod's containers are
simulated by kwok, so nothing inside a Pod (a sidecar, a probe) is exercised.

Ports: the API server and etcd cannot be told to bind port 0 and report it,
so each start takes them from ``tests.ports`` (outside the kernel's ephemeral
range, never the same port twice in a run), and a component that finds its
port taken by something outside the run makes the whole start try again.

Run it by hand: ``.venv/bin/python -m e2e.localcluster`` starts one and
prints the kubeconfig path until Ctrl-C.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from tests.ports import free_ports
from tests.waiting import wait_until

__all__ = [
    "BIN",
    "AuditReader",
    "Cluster",
    "ClusterError",
    "binaries_missing",
    "local_cluster",
    "timestamp",
    "wait_for",
]

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".tools" / "bin"
KWOK_STAGES = ROOT / ".tools" / "kwok" / "stages.yaml"
THIRD_PARTY_CRDS = ROOT / ".tools" / "crds"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = "10.96.0.0/16"  # room for a benchmark fleet of Services
START_ATTEMPTS = 4
READY_TIMEOUT = 120.0

# Every write and every get, at Metadata level (who, which verb, which object,
# the answer's code); lists, watches and the components' lease renewals are not logged.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "verbs": ["list", "watch"]},
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "Metadata"},
    ],
}
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection", "apply"})

# A Stage of our own beside kwok's: `helm test` pods (no owner, so kwok's own
# pod-complete leaves them running) complete with success, as their container would.
HELM_TEST_STAGE = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: rampart-helm-test-complete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Running]}
    - {key: '.metadata.annotations["helm.sh/hook"]', operator: In, values: [test]}
  next:
    statusTemplate: |
      {{ $now := Now }}
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }},
                       finishedAt: {{ $now | Quote }}}
      {{ end }}
      phase: Succeeded
"""


class ClusterError(RuntimeError):
    """The control plane did not come up; the message carries the failing component's log."""


class PortTaken(ClusterError):
    pass


def binaries_missing() -> list[str]:
    """The control-plane binaries scripts/build-controlplane has not built (yet)."""
    missing = [name for name in BINARIES if not (BIN / name).exists()]
    if not KWOK_STAGES.exists():
        missing.append(str(KWOK_STAGES.relative_to(ROOT)))
    return missing


@dataclass
class Cluster:
    """A running local control plane."""

    workdir: Path
    server: str  # https://127.0.0.1:PORT
    kubeconfig: Path  # admin (system:masters)
    ca_file: Path
    audit_log: Path
    nodes: list[str]
    pids: dict[str, int]  # of each component, for the benchmarks' CPU and RSS

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}

    def run(
        self,
        tool: str,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """A ``kubectl`` or ``helm`` from .tools/bin against this cluster."""
        result = subprocess.run(
            [str(BIN / tool), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(kubeconfig),
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{tool} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = self.run("kubectl", *args, input=input, check=check)
        return result.stdout + result.stderr

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        where = ["-n", namespace] if namespace else []
        result = self.run("kubectl", "get", kind, name, *where, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name}: {result.stderr}")
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def apply(self, manifest: dict[str, Any] | list[dict[str, Any]]) -> str:
        documents = manifest if isinstance(manifest, list) else [manifest]
        return self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents))

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """One raw request as admin: the status code and the JSON answer (a Status on errors)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.workdir / "admin.crt"), str(self.workdir / "admin.key"))
        request = urllib.request.Request(  # noqa: S310 - our own API server
            self.server + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as answer:  # noqa: S310
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def install_third_party_crds(self) -> None:
        """prometheus-operator's and Gateway API's CRDs (scripts/fetch-crds), Established."""
        paths = sorted(THIRD_PARTY_CRDS.glob("*.yaml"))
        if not paths:
            raise ClusterError(f"{THIRD_PARTY_CRDS} is empty: run scripts/install")
        args = [arg for path in paths for arg in ("-f", str(path))]
        self.kubectl("apply", "--server-side", *args)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *args)

    def token(self, service_account: str, namespace: str, hours: int = 2) -> str:
        """A bound token for a ServiceAccount, as the kubelet would mount it."""
        return self.kubectl(
            "create", "token", service_account, "-n", namespace, f"--duration={hours}h"
        ).strip()

    def kubeconfig_for(self, service_account: str, namespace: str) -> Path:
        """A kubeconfig that authenticates as a ServiceAccount: RBAC decides, not admin."""
        path = self.workdir / f"kubeconfig-{namespace}-{service_account}"
        _write_kubeconfig(
            path,
            self.server,
            self.ca_file,
            {"token": self.token(service_account, namespace)},
            namespace=namespace,
        )
        return path

    def audit_events(self) -> list[dict[str, Any]]:
        """Every write and get the API server has audited so far, oldest first."""
        return AuditReader(self.audit_log).new_events()

    def requests(
        self,
        user: str,
        since: datetime.datetime | None = None,
        verbs: frozenset[str] = WRITE_VERBS,
    ) -> list[dict[str, Any]]:
        """The audited requests of ``user`` with one of ``verbs`` (since a time)."""
        return [
            event
            for event in self.audit_events()
            if event.get("user", {}).get("username") == user
            and event.get("verb") in verbs
            and (since is None or timestamp(event["requestReceivedTimestamp"]) >= since)
        ]

    def writes(
        self, user: str, since: datetime.datetime | None = None, namespace: str | None = None
    ) -> collections.Counter[tuple[str, str, str]]:
        """Writes by ``user`` (since a time, in a namespace), by (verb, resource, subresource)."""
        counted: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for event in self.requests(user, since):
            ref = event.get("objectRef") or {}
            if namespace is not None and ref.get("namespace") != namespace:
                continue
            counted[event["verb"], ref.get("resource", ""), ref.get("subresource", "")] += 1
        return counted

    def wait_for(
        self, what: str, condition: Callable[[], Any], timeout: float = 60, every: float = 0.2
    ) -> Any:
        return wait_for(what, condition, timeout, every)


def wait_for(what: str, condition: Callable[[], Any], timeout: float, every: float) -> Any:
    """What ``condition`` returns once it is truthy; fails the test if it never is."""
    return wait_until(condition, timeout, every, what)


class AuditReader:
    """Reads the audit log as it grows: each call returns the events since the last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def new_events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written waits for next time
        self._offset += len(complete)
        events = []
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events


def timestamp(text: str) -> datetime.datetime:
    """An audit event's timestamp (RFC 3339, UTC)."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class _Authority:
    """The cluster's CA: signs the API server's certificate and every client's."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> _Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rampart-local-ca")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        stem: Path,
        common_name: str,
        organization: str | None = None,
        hosts: list[str] | None = None,
    ) -> tuple[Path, Path]:
        """A key and certificate (client, or serving when ``hosts`` are given)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
        )
        usages = [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
        if hosts:
            usages.append(x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        key_path, cert_path = stem.with_suffix(".key"), stem.with_suffix(".crt")
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path


def _write_kubeconfig(
    path: Path,
    server: str,
    ca_file: Path,
    user: dict[str, str],
    namespace: str = "default",
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": "user", "user": user}],
        "contexts": [
            {
                "name": "local",
                "context": {"cluster": "local", "user": "user", "namespace": namespace},
            }
        ],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


class _Processes:
    """The components, each with its log file; stopped in reverse order of start."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(BIN / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            start_new_session=True,  # a Ctrl-C to the tests is ours to pass on, in order
        )
        log.close()
        self.running.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check(self) -> None:
        """Raise if a component has exited: its log says why."""
        for name, process in self.running:
            if process.poll() is not None:
                tail = self.log_tail(name)
                error = PortTaken if "address already in use" in tail.lower() else ClusterError
                raise error(f"{name} exited with {process.returncode}:\n{tail}")

    def stop(self) -> None:
        # One at a time, clients before the API server and etcd last: stopped all
        # at once, the API server waits ~15 s on the watches of clients it lost.
        for _, process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


def _get(url: str, context: ssl.SSLContext, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as answer:  # noqa: S310
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def _nodes(count: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-node-{index}",
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": f"kwok-node-{index}",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "topology.kubernetes.io/zone": f"zone-{index % 3}",
                },
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            },
        }
        for index in range(count)
    ]


def _start(workdir: Path, processes: _Processes, nodes: int, log: Callable[[str], None]) -> Cluster:
    ca = _Authority.create()
    ca_file = workdir / "ca.crt"
    ca_file.write_bytes(ca.pem())
    etcd_client, etcd_peer, api_port = free_ports(3)
    server = f"https://127.0.0.1:{api_port}"
    hosts = [
        "127.0.0.1",
        "10.96.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    serving_key, serving_cert = ca.issue(workdir / "apiserver", "kube-apiserver", hosts=hosts)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private, sa_public = workdir / "sa.key", workdir / "sa.pub"
    sa_private.write_bytes(
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    sa_public.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    kubeconfigs = {}
    for who, cn, org in (
        ("admin", "rampart-local-admin", "system:masters"),
        ("controller-manager", "system:kube-controller-manager", None),
        ("scheduler", "system:kube-scheduler", None),
    ):
        key, cert = ca.issue(workdir / who, cn, organization=org)
        kubeconfigs[who] = workdir / f"{who}.kubeconfig"
        _write_kubeconfig(
            kubeconfigs[who],
            server,
            ca_file,
            {"client-certificate": str(cert), "client-key": str(key)},
        )
    audit_policy, audit_log = workdir / "audit-policy.yaml", workdir / "audit.log"
    audit_policy.write_text(yaml.safe_dump(AUDIT_POLICY))

    started = time.monotonic()
    etcd_data = workdir / "etcd"
    processes.start(
        "etcd",
        [
            "--name=local",
            f"--data-dir={etcd_data}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=local=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",  # a throwaway store: durability buys nothing here
            "--log-level=warn",
        ],
    )
    processes.start(
        "kube-apiserver",
        [
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={workdir / 'apiserver-certs'}",
            f"--tls-cert-file={serving_cert}",
            f"--tls-private-key-file={serving_key}",
            f"--client-ca-file={ca_file}",
            f"--service-account-key-file={sa_public}",
            f"--service-account-signing-key-file={sa_private}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--audit-policy-file={audit_policy}",
            f"--audit-log-path={audit_log}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",  # a write is in the log before its answer
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ],
    )
    context = ssl.create_default_context(cafile=str(ca_file))
    admin_key, admin_cert = workdir / "admin.key", workdir / "admin.crt"
    context.load_cert_chain(str(admin_cert), str(admin_key))
    _wait(processes, "kube-apiserver /readyz", lambda: _get(f"{server}/readyz", context)[0] == 200)
    log(f"API server ready after {time.monotonic() - started:.1f} s")

    processes.start(
        "kube-controller-manager",
        [
            f"--kubeconfig={kubeconfigs['controller-manager']}",
            f"--authentication-kubeconfig={kubeconfigs['controller-manager']}",
            f"--authorization-kubeconfig={kubeconfigs['controller-manager']}",
            "--controllers=*",
            f"--service-account-private-key-file={sa_private}",
            f"--root-ca-file={ca_file}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ],
    )
    processes.start(
        "kube-scheduler",
        [
            f"--kubeconfig={kubeconfigs['scheduler']}",
            f"--authentication-kubeconfig={kubeconfigs['scheduler']}",
            f"--authorization-kubeconfig={kubeconfigs['scheduler']}",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ],
    )
    kwok_config = workdir / "kwok.yaml"
    kwok_config.write_text(KWOK_STAGES.read_text() + "\n---\n" + HELM_TEST_STAGE)
    processes.start(
        "kwok",
        [
            f"--kubeconfig={kubeconfigs['admin']}",
            f"--config={kwok_config}",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
        ],
    )
    cluster = Cluster(
        workdir=workdir,
        server=server,
        kubeconfig=kubeconfigs["admin"],
        ca_file=ca_file,
        audit_log=audit_log,
        nodes=[node["metadata"]["name"] for node in _nodes(nodes)],
        pids={name: process.pid for name, process in processes.running},
    )
    cluster.apply(_nodes(nodes))

    def nodes_ready() -> bool:
        processes.check()
        listed = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
        ready = [
            node
            for node in listed
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) == nodes

    _wait(processes, "kwok's nodes Ready", nodes_ready)

    def default_service_account() -> bool:
        processes.check()
        return cluster.get("serviceaccount", "default", "default") is not None

    _wait(processes, "the default ServiceAccount", default_service_account)
    log(f"control plane ready after {time.monotonic() - started:.1f} s")
    return cluster


def _wait(processes: _Processes, what: str, condition: Callable[[], bool]) -> None:
    def met() -> bool:
        processes.check()  # a component that exited fails the start at once
        with contextlib.suppress(OSError):
            return condition()
        return False

    try:
        wait_until(met, READY_TIMEOUT, 0.1, what)
    except AssertionError as error:
        raise ClusterError(str(error)) from None


@contextlib.contextmanager
def local_cluster(
    workdir: Path | None = None, nodes: int = 3, log: Callable[[str], None] = lambda _: None
) -> Iterator[Cluster]:
    """A started control plane; everything it started is stopped on exit."""
    missing = binaries_missing()
    if missing:
        raise ClusterError(f"missing {', '.join(missing)}: run scripts/install")
    owned = workdir is None
    base = Path(tempfile.mkdtemp(prefix="rampart-cluster-")) if workdir is None else workdir
    try:
        for attempt in range(START_ATTEMPTS):
            attempt_dir = base / f"attempt-{attempt}"
            attempt_dir.mkdir(parents=True)
            processes = _Processes(attempt_dir)
            try:
                cluster = _start(attempt_dir, processes, nodes, log)
            except PortTaken as error:
                processes.stop()
                log(f"a port was taken, starting again: {str(error).splitlines()[0]}")
                continue
            except BaseException:
                processes.stop()
                raise
            try:
                yield cluster
            finally:
                processes.stop()
            return
        raise ClusterError(f"no free ports after {START_ATTEMPTS} attempts")
    finally:
        if owned and os.environ.get("RAMPART_KEEP_CLUSTER") != "1":
            shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    """Start a cluster and keep it until Ctrl-C."""
    with local_cluster(log=lambda line: print(line, flush=True)) as cluster:
        print(f"\n  export KUBECONFIG={cluster.kubeconfig}\n  {BIN}/kubectl get nodes\n")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    sys.exit(main())
