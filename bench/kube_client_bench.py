"""The operator's Kubernetes client beside the well-kept ones, on a real API server.

    .venv/bin/python bench/kube_client_bench.py [--gets 1000] [--applies 300]

What a reconcile costs in the client: a GET of a child (most drift checks do
nothing else) and a server-side apply of one (what a change does), each
measured one at a time (latency) and 32 at a time (throughput, the fleet at
start-up), plus what importing the client adds to the process's memory. Each
client runs in a process of its own against the same local control plane
(``e2e/localcluster.py``), authenticated by the same admin kubeconfig:

* ``rampart``: ``rampart_operator.kube.KubeClient`` (aiohttp, ~250 lines);
* ``lightkube`` (httpx) and ``kubernetes_asyncio`` (aiohttp, the official
  client's generated API for asyncio), each installed at a pinned version
  with kopf into a virtualenv of its own (``.tools/bench-clients/<name>``),
  never the project's: kopf imports kubernetes_asyncio whenever it is
  installed, so two clients in one environment would blur the numbers.

Every process imports kopf first (the operator runs on it whatever the
client); "+ client" is what importing the client adds to that, and for
kubernetes_asyncio it is already in the kopf column.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".tools" / "bench-clients"
REFERENCES = {"lightkube": "lightkube==1.0.1", "kubernetes_asyncio": "kubernetes_asyncio==36.1.0"}
KOPF = "kopf==1.45.2"  # the project's
NS, NAME = "bench", "probe"
CONCURRENCY = 32


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def configmap(revision: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NS, "labels": {"app": "bench"}},
        "data": {"revision": str(revision), "settings.yaml": "x: 1\n" * 40},
    }


async def _rampart() -> tuple[Callable[[], Awaitable[Any]], Callable[[int], Awaitable[Any]], Any]:
    import kopf

    from rampart_operator.kube import KubeClient

    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    client = KubeClient(info)

    async def get() -> Any:
        return await client.get("v1", "ConfigMap", NS, NAME)

    async def apply(revision: int) -> Any:
        return await client.apply(configmap(revision))

    return get, apply, client.close


async def _lightkube() -> tuple[Callable[[], Awaitable[Any]], Callable[[int], Awaitable[Any]], Any]:
    from lightkube import AsyncClient  # type: ignore[import-not-found]
    from lightkube.resources.core_v1 import ConfigMap  # type: ignore[import-not-found]

    client = AsyncClient(field_manager="rampart")

    async def get() -> Any:
        return await client.get(ConfigMap, NAME, namespace=NS)

    async def apply(revision: int) -> Any:
        return await client.apply(ConfigMap.from_dict(configmap(revision)), force=True)

    return get, apply, client.close


async def _kubernetes_asyncio() -> tuple[
    Callable[[], Awaitable[Any]], Callable[[int], Awaitable[Any]], Any
]:
    from kubernetes_asyncio import client, config  # type: ignore[import-not-found]

    await config.load_kube_config()
    api = client.ApiClient()
    core = client.CoreV1Api(api)

    async def get() -> Any:
        return await core.read_namespaced_config_map(NAME, NS)

    async def apply(revision: int) -> Any:
        return await core.patch_namespaced_config_map(
            NAME,
            NS,
            configmap(revision),
            field_manager="rampart",
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    return get, apply, api.close


CLIENTS = {
    "rampart": _rampart,
    "lightkube": _lightkube,
    "kubernetes_asyncio": _kubernetes_asyncio,
}


async def worker(name: str, gets: int, applies: int) -> dict[str, Any]:
    import kopf  # noqa: F401 - the baseline every operator process has

    baseline = rss_mb()
    started = time.perf_counter()
    get, apply, close = await CLIENTS[name]()
    imported = time.perf_counter() - started
    after_import = rss_mb()
    await get()  # connection set up, caches warm
    latencies = []
    for _ in range(gets):
        began = time.perf_counter()
        await get()
        latencies.append(time.perf_counter() - began)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def limited(call: Callable[[], Awaitable[Any]]) -> None:
        async with limit:
            await call()

    began = time.perf_counter()
    await asyncio.gather(*(limited(get) for _ in range(gets)))
    get_rate = gets / (time.perf_counter() - began)
    apply_latencies = []
    for revision in range(applies):
        began = time.perf_counter()
        await apply(revision)
        apply_latencies.append(time.perf_counter() - began)
    began = time.perf_counter()
    await asyncio.gather(
        *(limited(lambda r=r: apply(applies + r)) for r in range(applies))  # type: ignore[misc]
    )
    apply_rate = applies / (time.perf_counter() - began)
    result = close()
    if asyncio.iscoroutine(result):
        await result
    return {
        "client": name,
        "import_s": imported,
        "import_mb": after_import - baseline,
        "baseline_mb": baseline,
        "rss_mb": rss_mb(),
        "get_p50_ms": statistics.median(latencies) * 1000,
        "get_p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
        "gets_per_s": get_rate,
        "apply_p50_ms": statistics.median(apply_latencies) * 1000,
        "applies_per_s": apply_rate,
    }


def python_for(name: str) -> Path:
    """The project's Python for our client; a virtualenv of its own for each other."""
    if name not in REFERENCES:
        return Path(sys.executable)
    venv = VENVS / name
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {REFERENCES[name]} and {KOPF} into {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", REFERENCES[name], KOPF], check=True
        )
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gets", type=int, default=1000)
    parser.add_argument("--applies", type=int, default=300)
    parser.add_argument("--worker", choices=sorted(CLIENTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.worker, args.gets, args.applies))))
        return

    sys.path.insert(0, str(ROOT))
    from e2e.localcluster import local_cluster

    pythons = {name: python_for(name) for name in CLIENTS}
    with tempfile.TemporaryDirectory() as tmp, local_cluster(Path(tmp), nodes=1) as cluster:
        cluster.kubectl("create", "namespace", NS)
        cluster.apply(configmap(0))
        rows = []
        for name in CLIENTS:
            python = pythons[name]
            sizes = ["--gets", str(args.gets), "--applies", str(args.applies)]
            done = subprocess.run(
                [str(python), __file__, "--worker", name, *sizes],
                env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(
        f"\n{platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{args.gets} GETs and {args.applies} applies each, {CONCURRENCY} at a time for rates\n"
    )
    header = (
        "| client | import | RSS with kopf | + client | after the work "
        "| GET p50 | GET p99 | GETs/s | apply p50 | applies/s |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        print(
            f"| {row['client']} | {row['import_s'] * 1000:.0f} ms | {row['baseline_mb']:.0f} MB "
            f"| {row['import_mb']:.1f} MB "
            f"| {row['rss_mb']:.0f} MB | {row['get_p50_ms']:.2f} ms | {row['get_p99_ms']:.2f} ms "
            f"| {row['gets_per_s']:.0f} | {row['apply_p50_ms']:.2f} ms "
            f"| {row['applies_per_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
