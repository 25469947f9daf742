"""The operator on a real API server: reconcile latency and scale.

    .venv/bin/python bench/operator_bench.py [--creations 100] [--fleet 1000] [--idle 30]

Starts the local control plane (``e2e/localcluster.py``: etcd, kube-apiserver,
controller manager, scheduler, kwok with 10 fake nodes), installs the chart
out of cluster and runs ``rampart-operator run`` as a subprocess with the
chart's ServiceAccount's token (its RSS and CPU are its own), then measures:

  * fleet start-up: N HardenedServices (1 replica each) stored before the
    operator starts; the time until every one has its children and a status
    for its generation, then until the operator's last write; its RSS, and
    its CPU over the following idle period;
  * creation latency, with that fleet in place: HardenedServices created one
    at a time; from the API server receiving the create to its answer to the
    operator's last child created (ConfigMap, Service, Deployment, PDB), both
    read from the API server's audit log, so the bench's own polling is not
    in the numbers.

Everything shares the machine's cores: the API server, etcd, the controllers
and kwok work for every object too (their CPU is printed beside the
operator's), as they would on a control plane node.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from e2e.localcluster import AuditReader, Cluster, local_cluster
from e2e.localcluster import timestamp as audit_time
from e2e.rampart import OPERATOR_USER, install_rampart

NS = "bench"
HSVC_PATH = f"/apis/rampart.dev/v1alpha1/namespaces/{NS}/hardenedservices"
CHILDREN = {"configmaps", "services", "deployments", "poddisruptionbudgets"}
NODES = 10  # kwok's nodes take 110 pods each


def hardened(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"image": "ghcr.io/acme/app:1", "replicas": 1},
    }


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, cpu


def timestamp(text: str) -> float:
    return audit_time(text).timestamp()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def admin_session(cluster: Cluster) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(cluster.ca_file))
    context.load_cert_chain(str(cluster.workdir / "admin.crt"), str(cluster.workdir / "admin.key"))
    return aiohttp.ClientSession(
        base_url=cluster.server, connector=aiohttp.TCPConnector(ssl=context, limit=16)
    )


async def create_fleet(cluster: Cluster, count: int) -> None:
    async with admin_session(cluster) as session:
        queue = [hardened(f"svc-{index}") for index in range(count)]

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with session.post(HSVC_PATH, json=body) as answer:
                    if answer.status != 201:
                        raise RuntimeError(f"create: {answer.status} {await answer.text()}")

        await asyncio.gather(*(worker() for _ in range(16)))


async def reconciled_count(session: aiohttp.ClientSession) -> int:
    async with session.get(HSVC_PATH) as answer:
        items = (await answer.json())["items"]
    return sum(
        1
        for item in items
        if (item.get("status") or {}).get("observedGeneration") == item["metadata"]["generation"]
    )


async def rolled_out_count(session: aiohttp.ClientSession) -> int:
    path = f"/apis/apps/v1/namespaces/{NS}/deployments"
    async with session.get(path) as answer:
        items = (await answer.json())["items"]
    return sum(
        1
        for item in items
        if (item.get("status") or {}).get("readyReplicas") == item["spec"]["replicas"]
        and (item.get("status") or {}).get("observedGeneration") == item["metadata"]["generation"]
    )


async def until_quiet(audit: AuditReader, seconds: float) -> float:
    """Until the operator has made no write for ``seconds``; the time of its last write."""
    last = time.time()
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < seconds:
        writes = [
            e
            for e in audit.new_events()
            if e["user"]["username"] == OPERATOR_USER and e["verb"] not in ("get",)
        ]
        if writes:
            last = max(timestamp(e["stageTimestamp"]) for e in writes)
            quiet_since = time.monotonic()
        await asyncio.sleep(0.2)
    return last


async def fleet_startup(
    cluster: Cluster, workdir: Path, count: int, idle: float
) -> tuple[dict[str, float], Any]:
    loop = asyncio.get_running_loop()
    started: list[float] = []

    def fleet_first() -> None:
        # Created before the operator starts; the validating webhook is not there
        # yet, and the bench's values let the API server admit without it.
        asyncio.run_coroutine_threadsafe(create_fleet(cluster, count), loop).result()
        started.append(time.time())

    control_before = {name: proc_stats(pid)[1] for name, pid in cluster.pids.items()}
    operator = await asyncio.to_thread(
        install_rampart,
        cluster,
        workdir,
        {"webhooks": {"validation": {"failurePolicy": "Ignore"}}},
        {"RAMPART_DRIFT_INTERVAL": "300", "RAMPART_SIDECAR_MODE": "native"},
        fleet_first,
    )
    audit = AuditReader(cluster.audit_log)
    async with admin_session(cluster) as session:
        for _ in range(1200):  # 20 minutes at most
            if await reconciled_count(session) >= count:
                break
            await asyncio.sleep(1.0)
        else:
            raise TimeoutError(f"{count} HardenedServices not reconciled within 20 minutes")
        done = time.time() - started[0]
        # The cluster is not idle before every Deployment has rolled out: the
        # controllers create the pods one by one, each admitted through the
        # operator's injection webhook, which is work of the operator's too.
        for _ in range(1200):
            if await rolled_out_count(session) >= count:
                break
            await asyncio.sleep(1.0)
        else:
            raise TimeoutError(f"{count} Deployments not rolled out within 20 minutes")
        rolled_out = time.time() - started[0]
    last_write = await until_quiet(audit, 3.0)
    rss, cpu_done = proc_stats(operator.process.pid)
    await asyncio.sleep(idle)
    rss_idle, cpu_idle = proc_stats(operator.process.pid)
    control = {
        name: proc_stats(pid)[1] - control_before[name] for name, pid in cluster.pids.items()
    }
    return {
        "seconds": done,
        "rolled_out": rolled_out,
        "settled": last_write - started[0],
        "rss_mb": max(rss, rss_idle),
        "idle_cpu": (cpu_idle - cpu_done) / idle,
        "operator_cpu_s": cpu_done,
        **{f"cpu_{name}": value for name, value in control.items()},
    }, operator


async def creation_latency(cluster: Cluster, count: int) -> dict[str, float]:
    audit = AuditReader(cluster.audit_log)
    audit.new_events()  # from here on
    latencies = []
    async with admin_session(cluster) as session:
        for index in range(count):
            name = f"new-{index}"
            async with session.post(HSVC_PATH, json=hardened(name)) as answer:
                assert answer.status == 201, await answer.text()
            created: float | None = None
            children: dict[str, float] = {}
            deadline = time.monotonic() + 30
            while len(children) < len(CHILDREN):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: children {sorted(children)} after 30 s")
                for event in audit.new_events():
                    ref = event.get("objectRef") or {}
                    if ref.get("namespace") != NS:
                        continue
                    if (
                        event["verb"] == "create"
                        and ref.get("resource") == "hardenedservices"
                        and ref.get("name") == name
                    ):
                        created = timestamp(event["requestReceivedTimestamp"])
                    elif (
                        # Children are created by server-side apply: a patch answered 201.
                        event["user"]["username"] == OPERATOR_USER
                        and event["verb"] == "patch"
                        and event.get("responseStatus", {}).get("code") == 201
                        and ref.get("resource") in CHILDREN
                        and ref.get("name") in (name, f"{name}-sidecar")
                    ):
                        children[ref["resource"]] = timestamp(event["stageTimestamp"])
                await asyncio.sleep(0.005)
            assert created is not None
            latencies.append(max(children.values()) - created)
    return {
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creations", type=int, default=100)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local_cluster(Path(tmp), nodes=NODES) as cluster:
        cluster.kubectl("create", "namespace", NS)
        fleet, operator = await fleet_startup(cluster, Path(tmp), args.fleet, args.idle)
        try:
            latency = await creation_latency(cluster, args.creations)
        finally:
            operator.stop()
    print(
        f"# operator benchmark on the local control plane (Kubernetes 1.35.4, kwok), "
        f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(
        f"# command: .venv/bin/python bench/operator_bench.py --creations {args.creations} "
        f"--fleet {args.fleet} --idle {args.idle:g}"
    )
    print("| measurement | result | target |")
    print("|---|---:|---:|")
    print(
        f"| {args.fleet} HardenedServices reconciled from start-up (children and status) | "
        f"{fleet['seconds']:.1f} s | 60 s |"
    )
    print(
        f"| ... until every Deployment rolled out (pods through the injection webhook) | "
        f"{fleet['rolled_out']:.1f} s | |"
    )
    print(f"| ... until the operator's last write | {fleet['settled']:.1f} s | |")
    print(f"| operator RSS | {fleet['rss_mb']:.0f} MB | 250 MB |")
    print(
        f"| operator CPU when idle, over {args.idle:g} s after the rollouts and its last write | "
        f"{fleet['idle_cpu']:.3f} cores | near 0 |"
    )
    print(f"| operator CPU until then, start-up included | {fleet['operator_cpu_s']:.1f} s | |")
    for name in ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok"):
        print(f"| {name} CPU over the same time | {fleet[f'cpu_{name}']:.1f} s | |")
    print(
        f"| all children of a new HardenedService, p50 over {args.creations} "
        f"(with the fleet in place) | {latency['p50'] * 1000:.0f} ms | |"
    )
    print(f"| ... p99 | {latency['p99'] * 1000:.0f} ms | 1000 ms |")
    print(f"| ... max | {latency['max'] * 1000:.0f} ms | |")


if __name__ == "__main__":
    asyncio.run(main())
