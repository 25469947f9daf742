"""Alert-to-rollback latency on a real API server: an Alertmanager webhook → canary weight 0.

    .venv/bin/python bench/rollback_bench.py [--runs 50]

Starts the local control plane (``e2e/localcluster.py``), installs the chart
out of cluster and runs ``rampart-operator run`` as a subprocess with the
chart's ServiceAccount's token and its Alertmanager receiver on. Each run
starts a canary of a new image at 50% (the replicas router: 2 of 4 pods,
rolled out by the real Deployment controller and kwok), waits until the
operator has gone quiet (no write for 0.3 s: alerts come minutes after a
weight change, not while the operator is still applying it; a rollout tick,
every 2 s, may still be in flight, as in a real cluster), POSTs Alertmanager's
webhook body for a firing alert labelled for the service, and takes the time
until the API server answered the operator's write of the canary Deployment
(read from the audit log: no polling of ours is in the number); a GET then
checks that write set 0 replicas. The alert is then resolved so the next
run's rollout may start. The operator's own histogram (webhook received →
write answered) is printed beside it.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.operator_bench import admin_session, percentile, timestamp
from e2e.localcluster import AuditReader, Cluster, local_cluster
from e2e.rampart import ALERT_TOKEN, OPERATOR_USER, install_rampart
from tests.ports import free_port
from tests.waiting import async_wait_until

from rampart_operator.alertproof import PROOF_LABEL, proof, proof_key

NS = "bench"
NAME = "checkout"
HSVC = f"/apis/rampart.dev/v1alpha1/namespaces/{NS}/hardenedservices/{NAME}"
CANARY = f"/apis/apps/v1/namespaces/{NS}/deployments/{NAME}-canary"


def service() -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {
            "image": "ghcr.io/acme/app:1",
            "replicas": 4,
            "canary": {"steps": [{"weight": 50, "pause": "1h"}, {"weight": 100}]},
        },
    }


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
                    # What the operator renders on the service's rules (alertproof.py).
                    PROOF_LABEL: proof(proof_key(ALERT_TOKEN) or b"", NS, NAME),
                },
                "fingerprint": f"run-{run}",
            }
        ],
    }


async def get(session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
    async with session.get(path) as answer:
        answer.raise_for_status()
        found: dict[str, Any] = await answer.json()
        return found


async def eventually(what: str, check: Any, timeout: float = 60) -> None:
    await async_wait_until(check, timeout, 0.05, what)


async def settled_at_half(session: aiohttp.ClientSession) -> bool:
    """At 50%, with the reconciliation that got there finished (its full status written)."""
    status = (await get(session, HSVC)).get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    message = conditions.get("Reconciling", {}).get("message", "")
    canary = await get(session, CANARY)
    return bool(message.startswith("step 1/2: 50%") and canary["spec"]["replicas"] == 2)


def operator_writes(audit: AuditReader) -> list[dict[str, Any]]:
    return [
        e
        for e in audit.new_events()
        if e["user"]["username"] == OPERATOR_USER and e["verb"] not in ("get",)
    ]


async def quiet(audit: AuditReader, seconds: float) -> None:
    since = time.monotonic()
    while time.monotonic() - since < seconds:
        if operator_writes(audit):
            since = time.monotonic()
        await asyncio.sleep(0.01)


async def operator_histogram(url: str) -> tuple[float, float]:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
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


async def measure(cluster: Cluster, workdir: Path, runs: int) -> tuple[list[float], float, float]:
    metrics_port = free_port()
    operator = await asyncio.to_thread(
        install_rampart,
        cluster,
        workdir,
        None,
        {"RAMPART_METRICS_PORT": str(metrics_port), "RAMPART_SIDECAR_MODE": "native"},
    )
    latencies: list[float] = []
    audit = AuditReader(cluster.audit_log)
    headers = {"Authorization": f"Bearer {ALERT_TOKEN}"}
    try:
        receiver = aiohttp.TCPConnector(ssl=operator.alert_context())  # HTTPS, by default
        async with (
            admin_session(cluster) as session,
            aiohttp.ClientSession(connector=receiver) as plain,
        ):
            async with session.post(HSVC.rsplit("/", 1)[0], json=service()) as answer:
                assert answer.status == 201, await answer.text()

            async def initialized() -> bool:
                status = (await get(session, HSVC)).get("status") or {}
                return (status.get("canary") or {}).get("phase") == "Initialized"

            await eventually("Initialized", initialized)
            for index in range(runs):
                image = {"spec": {"canary": {"image": f"ghcr.io/acme/app:{index + 2}"}}}
                merge = {"Content-Type": "application/merge-patch+json"}
                async with session.patch(HSVC, json=image, headers=merge) as answer:
                    answer.raise_for_status()
                await eventually("at 50%", lambda: settled_at_half(session))
                await quiet(audit, 0.3)
                sent = time.time()
                async with plain.post(
                    operator.alert_url, json=webhook_body("firing", index), headers=headers
                ) as answer:
                    answer.raise_for_status()
                written: float | None = None
                deadline = time.monotonic() + 30
                while written is None and time.monotonic() < deadline:
                    for event in operator_writes(audit):
                        ref = event.get("objectRef") or {}
                        if ref.get("resource") == "deployments" and ref.get("name") == (
                            f"{NAME}-canary"
                        ):
                            written = timestamp(event["stageTimestamp"])
                    await asyncio.sleep(0.002)
                assert written is not None, "no write of the canary within 30 s"
                assert (await get(session, CANARY))["spec"]["replicas"] == 0
                latencies.append(written - sent)
                async with plain.post(
                    operator.alert_url, json=webhook_body("resolved", index), headers=headers
                ) as answer:
                    answer.raise_for_status()
        own_sum, own_count = await operator_histogram(f"http://127.0.0.1:{metrics_port}/")
    finally:
        operator.stop()
    return latencies, own_sum, own_count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, local_cluster(Path(tmp)) as cluster:
        cluster.kubectl("create", "namespace", NS)
        latencies, own_sum, own_count = await measure(cluster, Path(tmp), args.runs)
    ms = [value * 1000 for value in latencies]
    print(
        f"# rollback benchmark on the local control plane (Kubernetes 1.35.4, kwok), "
        f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"# command: .venv/bin/python bench/rollback_bench.py --runs {args.runs}")
    print("| alert webhook → canary at 0 replicas written (the API's answer) | result | target |")
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
        "\nFor comparison: Flagger and Argo Rollouts notice trouble at their next analysis "
        "interval (1 minute by default) and do not act on Alertmanager alerts."
    )


if __name__ == "__main__":
    asyncio.run(main())
