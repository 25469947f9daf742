"""Alert-to-rollback latency: an Alertmanager webhook reaches the operator → canary weight 0.

    .venv/bin/python bench/rollback_bench.py [--runs 50]

kmock runs in this process, ``rampart-operator run`` as a subprocess with its
Alertmanager receiver on; this process also plays the Deployment controller
(every Deployment's replicas become available at once). Each run starts a
canary of a new image at 50%, POSTs Alertmanager's webhook body for a firing
alert labelled for the service, and times until the emulator holds the canary
Deployment at 0 replicas (the replicas router's weight 0); then it resolves
the alert so the next run's rollout may start. Each alert is sent once the
operator has gone quiet (no API request for 0.3 s): alerts come minutes after a
weight change, not while the operator is still applying it; a rollout tick
(every 2 s) may still be in flight, as in a real cluster.

kmock keeps every version of every object and, unless ``tests/emulator.py``
spares it (this bench uses it), walks every request it ever served on every
new one, so it slows down as runs write: the runs go in sessions of
``--per-session`` on a fresh emulator and operator, Events are cleared
between runs, and the emulator's own GET latency is printed beside the result.
The operator's own histogram
(webhook received → write answered) is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import kmock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operator_bench import (
    HSVC,
    NS,
    declare_resources,
    free_port,
    percentile,
    quiet,
    speed_up_matching,
    start_operator,
    wait_for,
)

NAME = "checkout"
TOKEN = "bench-token"  # noqa: S105 (a throwaway for a loopback operator)


def service() -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": "uid-checkout",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {
            "image": "ghcr.io/acme/app:1",
            "replicas": 4,
            "canary": {"steps": [{"weight": 50, "pause": "1h"}, {"weight": 100}]},
        },
    }


def live(emulator: kmock.KubernetesEmulator, resource: str, name: str) -> dict[str, Any]:
    try:
        found = emulator.objects[resource, NS, name]
    except KeyError:
        return {}
    return {} if found.deleted else dict(found.raw)


def canary(emulator: kmock.KubernetesEmulator) -> dict[str, Any]:
    return dict((live(emulator, HSVC, NAME).get("status") or {}).get("canary") or {})


def canary_replicas(emulator: kmock.KubernetesEmulator) -> int | None:
    found = live(emulator, "apps/v1/deployments", f"{NAME}-canary")
    return found.get("spec", {}).get("replicas") if found else None


async def deployment_controller(emulator: kmock.KubernetesEmulator, api: str) -> None:
    counts = ("replicas", "updatedReplicas", "availableReplicas", "readyReplicas")
    async with aiohttp.ClientSession() as client:
        while True:
            for name in (NAME, f"{NAME}-canary"):
                raw = live(emulator, "apps/v1/deployments", name)
                wanted = raw.get("spec", {}).get("replicas", 1)
                if raw and (raw.get("status") or {}).get("availableReplicas") != wanted:
                    path = f"{api}/apis/apps/v1/namespaces/{NS}/deployments/{name}"
                    body = {"status": dict.fromkeys(counts, wanted)}
                    headers = {"Content-Type": "application/merge-patch+json"}
                    async with client.patch(path, json=body, headers=headers) as response:
                        response.raise_for_status()
            await asyncio.sleep(0.05)


def settled_at_half(emulator: kmock.KubernetesEmulator) -> bool:
    """At 50%, with the reconciliation that got there finished (its full status written)."""
    status = live(emulator, HSVC, NAME).get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    message = conditions.get("Reconciling", {}).get("message", "")
    return bool(message.startswith("step 1/2: 50%") and canary_replicas(emulator) == 2)


def clear_events(emulator: kmock.KubernetesEmulator) -> None:
    """kmock scans its whole store per request; a real API server indexes Events away."""
    for key, _ in list(emulator.objects.items()):
        if key[0].plural == "events":
            del emulator.objects[key]


def webhook_body(status: str, run: int) -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "rampart",
        "alerts": [
            {
                "status": status,
                "labels": {
                    "alertname": "RampartHighErrorRate",
                    "namespace": NS,
                    "hardenedservice": NAME,
                    "severity": "critical",
                },
                "fingerprint": f"run-{run}",
            }
        ],
    }


async def operator_histogram(client: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    async with client.get(url) as response:
        text = await response.text()
    values = {}
    for line in text.splitlines():
        if line.startswith("rampart_operator_alert_to_rollback_seconds_"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return (
        values.get("rampart_operator_alert_to_rollback_seconds_sum", 0.0),
        values.get("rampart_operator_alert_to_rollback_seconds_count", 0.0),
    )


async def get_latency(client: aiohttp.ClientSession, url: str) -> float:
    """The emulator's own time for one GET of the HardenedService (median of 5)."""
    times = []
    for _ in range(5):
        started = time.monotonic()
        async with client.get(url) as response:
            await response.read()
        times.append(time.monotonic() - started)
    return statistics.median(times)


async def session(runs: int, first: int) -> tuple[list[float], list[float], tuple[float, float]]:
    alert_port, metrics_port = free_port(), free_port()
    env = {
        "RAMPART_ALERT_PORT": str(alert_port),
        "RAMPART_ALERT_TOKEN": TOKEN,
        "RAMPART_METRICS_PORT": str(metrics_port),
        "RAMPART_WEBHOOK_PORT": "0",
    }
    latencies: list[float] = []
    api_times: list[float] = []
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator):
        declare_resources(emulator)
        api = str(emulator.url).rstrip("/")
        controller = asyncio.create_task(deployment_controller(emulator, api))
        hsvc_url = f"{api}/apis/rampart.dev/v1alpha1/namespaces/{NS}/hardenedservices/{NAME}"
        webhook = f"http://127.0.0.1:{alert_port}/alertmanager"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with tempfile.TemporaryDirectory() as tmp:
            operator = await start_operator(emulator, Path(tmp), env)
            try:
                async with aiohttp.ClientSession() as client:
                    emulator.objects[HSVC, NS, NAME] = service()
                    await wait_for(lambda: canary(emulator).get("phase") == "Initialized", 60)
                    for index in range(first, first + runs):
                        image = {"spec": {"canary": {"image": f"ghcr.io/acme/app:{index + 2}"}}}
                        headers = {"Content-Type": "application/merge-patch+json"}
                        async with client.patch(hsvc_url, json=image, headers=headers) as response:
                            response.raise_for_status()
                        await wait_for(lambda: settled_at_half(emulator), 60)
                        clear_events(emulator)
                        api_times.append(await get_latency(client, hsvc_url))
                        # Alerts come minutes after a weight change, not while the
                        # operator is still busy with it: wait until it is quiet.
                        await quiet(emulator, 0.3)
                        started = time.monotonic()
                        body = webhook_body("firing", index)
                        async with client.post(webhook, json=body, headers=auth) as response:
                            response.raise_for_status()
                        await wait_for(lambda: canary_replicas(emulator) == 0, 30, interval=0.002)
                        latencies.append(time.monotonic() - started)
                        body = webhook_body("resolved", index)
                        async with client.post(webhook, json=body, headers=auth) as response:
                            response.raise_for_status()
                    own = await operator_histogram(client, f"http://127.0.0.1:{metrics_port}/")
            finally:
                operator.terminate()
                await operator.wait()
                controller.cancel()
    return latencies, api_times, own


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--per-session", type=int, default=5)
    args = parser.parse_args()
    speed_up_matching()
    latencies: list[float] = []
    api_times: list[float] = []
    own_sum = own_count = 0.0
    for first in range(0, args.runs, args.per_session):
        runs = min(args.per_session, args.runs - first)
        found, api, (own_s, own_c) = await session(runs, first)
        latencies += found
        api_times += api
        own_sum, own_count = own_sum + own_s, own_count + own_c
    ms = [value * 1000 for value in latencies]
    print(
        f"# rollback benchmark, {datetime.date.today()}, {platform.node()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"# command: .venv/bin/python bench/rollback_bench.py --runs {args.runs} "
        f"--per-session {args.per_session}"
    )
    print("| alert webhook → canary at 0 replicas in the API | result | target |")
    print("|---|---:|---:|")
    print(f"| runs | {len(ms)} | ≥ 50 |")
    print(f"| p50 | {statistics.median(ms):.0f} ms | |")
    print(f"| p99 | {percentile(ms, 0.99):.0f} ms | 1000 ms |")
    print(f"| max | {max(ms):.0f} ms | |")
    print(f"| mean | {statistics.fmean(ms):.0f} ms | |")
    if own_count:
        print(
            f"| operator's own measure (received → write answered), mean over "
            f"{own_count:.0f} | {own_sum / own_count * 1000:.0f} ms | |"
        )
    print(
        f"| the emulator's own GET of the HardenedService, median before each run "
        f"| {statistics.median(api_times) * 1000:.0f} ms | |"
    )
    ratios = [lat / api for lat, api in zip(latencies, api_times, strict=True)]
    print(
        f"| the same in emulator GETs (each run over the GET just before it), p50 / p99 "
        f"| {statistics.median(ratios):.1f} / {percentile(ratios, 0.99):.1f} | |"
    )
    print(
        "\nThe operator's path is 2 API round trips (store the rolled-back state while "
        "reading the canary; write its weight 0), after any reconciliation in flight."
    )
    print(
        "\nFor comparison: Flagger and Argo Rollouts notice trouble at their next analysis "
        "interval (1 minute by default) and do not act on Alertmanager alerts."
    )


if __name__ == "__main__":
    asyncio.run(main())
