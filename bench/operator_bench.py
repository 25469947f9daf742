"""The operator against the kmock emulator: reconcile latency and scale.

    .venv/bin/python bench/operator_bench.py [--creations 100] [--fleet 1000]

Runs kmock in this process and ``rampart-operator run`` as a subprocess (so
its RSS and CPU are its own), connected through a kubeconfig, then measures:

  * creation latency: HardenedServices created one at a time through the
    API; time from the create call until all four children exist (p50, p99);
  * fleet start-up: N HardenedServices already stored when the operator
    starts; time until every one has all its children and a status for its
    generation, then until the operator's last API request; its RSS, and its
    CPU use over the following idle period;
  * with ``--drift S``: the operator's CPU over one drift interval, one
    drift check of every HardenedService.

kmock 0.8 decides which reaction serves a request by walking every request
it ever served, and finds a named object by scanning the whole store: alone,
it spent ~99% of a core and made the numbers its own. ``tests/emulator.py``
answers both questions the same way without the walks (tests/operator/
test_emulator.py compares it with kmock's own answers); the emulator's CPU
(this process) is still printed beside the operator's.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.emulator import speed_up_matching

NS = "bench"
HSVC = "rampart.dev/v1alpha1/hardenedservices"
CHILDREN = (
    ("v1/configmaps", "-sidecar"),
    ("v1/services", ""),
    ("apps/v1/deployments", ""),
    ("policy/v1/poddisruptionbudgets", ""),
)
RESOURCES = {
    HSVC: ("HardenedService", True, {"status"}),
    "apps/v1/deployments": ("Deployment", True, {"status"}),
    "v1/services": ("Service", True, set()),
    "v1/configmaps": ("ConfigMap", True, set()),
    "v1/secrets": ("Secret", True, set()),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True, set()),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True, set()),
    "batch/v1/cronjobs": ("CronJob", True, {"status"}),
    "v1/events": ("Event", True, set()),
    "v1/namespaces": ("Namespace", False, set()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, set()),
}


def declare_resources(emulator: kmock.KubernetesEmulator) -> None:
    for key, (kind, namespaced, sub) in RESOURCES.items():
        emulator.resources[key] = kmock.ResourceInfo(
            kind=kind,
            namespaced=namespaced,
            subresources=sub,
            verbs={"list", "watch", "get", "create", "patch", "update", "delete"},
        )


def hardened(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {"image": "ghcr.io/acme/app:1", "replicas": 2},
    }


def complete(emulator: kmock.KubernetesEmulator, name: str) -> bool:
    for resource_name, suffix in CHILDREN:
        try:
            if emulator.objects[resource_name, NS, name + suffix].deleted:
                return False
        except KeyError:
            return False
    return True


def reconciled(emulator: kmock.KubernetesEmulator, name: str) -> bool:
    """Every child exists and the status says this generation was reconciled."""
    if not complete(emulator, name):
        return False
    resource = emulator.objects[HSVC, NS, name].raw
    observed = (resource.get("status") or {}).get("observedGeneration", 0)
    return bool(observed >= resource["metadata"]["generation"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, cpu


async def start_operator(
    emulator: kmock.KubernetesEmulator, workdir: Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "kmock",
                "clusters": [
                    {"name": "kmock", "cluster": {"server": str(emulator.url).rstrip("/")}}
                ],
                "users": [{"name": "bench", "user": {"token": "bench"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "bench"}}],
            }
        )
    )
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "RAMPART_METRICS_PORT": "0",
        "RAMPART_SIDECAR_MODE": "native",
        "RAMPART_ALERT_PORT": "0",
        "RAMPART_WEBHOOK_PORT": "0",
        **(env or {}),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "rampart_operator",
        "run",
        "--liveness",
        f"http://127.0.0.1:{free_port()}/healthz",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def wait_for(condition: Any, timeout: float, interval: float = 0.05) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise TimeoutError(f"not done within {timeout}s")


async def quiet(emulator: kmock.KubernetesEmulator, seconds: float) -> None:
    """Until no request has reached the emulator for ``seconds`` (its request log)."""
    seen, since = -1, time.monotonic()
    while time.monotonic() - since < seconds:
        count = len(emulator._requests)
        if count != seen:
            seen, since = count, time.monotonic()
        await asyncio.sleep(0.01)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def creation_latency(count: int) -> dict[str, float]:
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator):
        declare_resources(emulator)
        with tempfile.TemporaryDirectory() as tmp:
            operator = await start_operator(emulator, Path(tmp))
            try:
                url = (
                    str(emulator.url).rstrip("/")
                    + f"/apis/rampart.dev/v1alpha1/namespaces/{NS}/hardenedservices"
                )
                latencies = []
                async with aiohttp.ClientSession() as client:
                    # A first object, so that start-up is not part of the numbers.
                    async with client.post(url, json=hardened("warmup")) as response:
                        response.raise_for_status()
                    await wait_for(lambda: complete(emulator, "warmup"), 60)
                    for index in range(count):
                        name = f"svc-{index}"
                        started = time.monotonic()
                        async with client.post(url, json=hardened(name)) as response:
                            response.raise_for_status()
                        await wait_for(lambda n=name: complete(emulator, n), 30, interval=0.005)
                        latencies.append(time.monotonic() - started)
            finally:
                operator.terminate()
                await operator.wait()
    return {
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
    }


async def fleet_startup(count: int, idle_seconds: float, drift: float | None) -> dict[str, float]:
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator):
        declare_resources(emulator)
        for index in range(count):
            emulator.objects[HSVC, NS, f"svc-{index}"] = hardened(f"svc-{index}")
        names = [f"svc-{index}" for index in range(count)]
        with tempfile.TemporaryDirectory() as tmp:
            cpu_before = resource.getrusage(resource.RUSAGE_SELF)
            env = {"RAMPART_DRIFT_INTERVAL": str(drift)} if drift else {}
            started = time.monotonic()
            operator = await start_operator(emulator, Path(tmp), env)
            try:
                pending = set(names)

                def all_done() -> bool:
                    for name in list(pending):
                        if reconciled(emulator, name):
                            pending.discard(name)
                    return not pending

                elapsed = await wait_for(all_done, 600, interval=0.5)
                # kopf's own bookkeeping (its annotations, Events) trails the status.
                await quiet(emulator, 2.0)
                settled = time.monotonic() - started - 2.0
                rss, cpu_done = proc_stats(operator.pid)
                cpu_after = resource.getrusage(resource.RUSAGE_SELF)
                await asyncio.sleep(idle_seconds)
                rss_idle, cpu_idle = proc_stats(operator.pid)
                drift_pass: dict[str, float] = {}
                if drift:
                    # First checks come one to two intervals after the operator saw each
                    # object (spread by uid), then every interval: from two intervals on,
                    # any window of one interval holds about one check of each object.
                    if time.monotonic() - started > drift:
                        print("# the idle window overlapped drift checks: use a larger --drift")
                    await asyncio.sleep(max(0.0, started + 2 * drift - time.monotonic()))
                    _, cpu_before_pass = proc_stats(operator.pid)
                    await asyncio.sleep(drift)
                    rss_pass, cpu_after_pass = proc_stats(operator.pid)
                    drift_pass = {"drift_cpu_s": cpu_after_pass - cpu_before_pass}
                    rss_idle = max(rss_idle, rss_pass)
            finally:
                operator.terminate()
                await operator.wait()
    emulator_cpu = (
        cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
    )
    return {
        "seconds": elapsed,
        "settled": settled,
        **drift_pass,
        "rss_mb": max(rss, rss_idle),
        "idle_cpu": (cpu_idle - cpu_done) / idle_seconds,
        "operator_cpu_s": cpu_done,
        "emulator_cpu_s": emulator_cpu,
    }


async def main() -> None:
    speed_up_matching()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creations", type=int, default=100)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle measured")
    parser.add_argument(
        "--drift",
        type=float,
        default=None,
        help="the operator's drift interval (RAMPART_DRIFT_INTERVAL); when given, the "
        "operator's CPU over one interval of drift checks is measured too, from two "
        "intervals after start-up (default: the operator's 300 s, not waited for)",
    )
    args = parser.parse_args()
    latency = await creation_latency(args.creations)
    fleet = await fleet_startup(args.fleet, args.idle, args.drift)
    drift_option = f" --drift {args.drift:g}" if args.drift else ""
    print(
        f"# operator benchmark, {datetime.date.today()}, {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"# command: .venv/bin/python bench/operator_bench.py --creations {args.creations} "
        f"--fleet {args.fleet} --idle {args.idle:g}{drift_option}"
    )
    print("| measurement | result | target |")
    print("|---|---:|---:|")
    print(
        f"| all children of a new HardenedService, p50 over {args.creations} "
        f"| {latency['p50'] * 1000:.0f} ms | |"
    )
    print(f"| ... p99 | {latency['p99'] * 1000:.0f} ms | 1000 ms |")
    print(f"| ... max | {latency['max'] * 1000:.0f} ms | |")
    print(
        f"| {args.fleet} HardenedServices reconciled from start-up (children and status) | "
        f"{fleet['seconds']:.1f} s | 60 s |"
    )
    print(
        f"| ... until the operator's last API request (kopf's bookkeeping after the status) | "
        f"{fleet['settled']:.1f} s | |"
    )
    print(f"| operator RSS | {fleet['rss_mb']:.0f} MB | 250 MB |")
    print(
        f"| operator CPU when idle, over {args.idle:g} s after its last request | "
        f"{fleet['idle_cpu']:.3f} cores | near 0 |"
    )
    print(f"| operator CPU until then, start-up included | {fleet['operator_cpu_s']:.1f} s | |")
    print(f"| emulator CPU until then (this process) | {fleet['emulator_cpu_s']:.0f} s | |")
    if "drift_cpu_s" in fleet:
        print(
            f"| operator CPU over one drift interval ({args.drift:g} s, a check of every "
            f"HardenedService) | {fleet['drift_cpu_s']:.1f} s = "
            f"{fleet['drift_cpu_s'] / args.drift:.3f} cores | |"
        )
        print(
            f"| ... the same checks at the operator's default 300 s interval | "
            f"{fleet['drift_cpu_s'] / 300:.3f} cores | near 0 |"
        )


if __name__ == "__main__":
    asyncio.run(main())
