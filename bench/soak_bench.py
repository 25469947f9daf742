"""Memory over a long run at a fixed rate: does the sidecar's RSS stay flat?

    .venv/bin/python bench/soak_bench.py [--minutes 10] [--rate 1000]

One origin (nginx), then nginx as a proxy and the sidecar with every policy
and its memory cache (``maxEntries: 10000``), each loaded in turn for
``--minutes`` at ``--rate`` requests/s by a load generator in this process.
Half the requests go to 1,000 recurring paths (cache hits after the first),
half to paths never seen before (each a miss that the cache then keeps, until
``maxEntries`` caps it), so anything kept per path or per request shows up as
growth. Prints the RSS each minute and the growth over the second half, after
the cache has filled.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_bench import (  # the bench scripts share their process helpers
    LOAD_CORE,
    PROXY_CORE,
    ensure_tools,
    free_port,
    nginx_conf,
    nginx_worker_pid,
    process,
    rss_mb,
    sidecar_conf,
)

CONNECTIONS = 20


async def load(url: str, rate: int, seconds: float, sample: Callable[[], None]) -> tuple[int, int]:
    """``rate`` requests/s for ``seconds``; ``sample`` runs every 60 s. Returns (sent, failed)."""
    sent = failed = 0
    counter = itertools.count()
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(path: str) -> None:
            nonlocal failed
            try:
                async with session.get(url + path) as response:
                    await response.read()
                    failed += response.status != 200
            except aiohttp.ClientError:
                failed += 1

        tasks: set[asyncio.Task[None]] = set()
        next_sample = started + 60
        while (now := time.monotonic()) - started < seconds:
            due = int((now - started) * rate)
            while sent < due:
                n = next(counter)
                path = f"/recurring/{random.randrange(1000)}" if n % 2 else f"/once/{n}"
                task = asyncio.create_task(one(path))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            if now >= next_sample:
                sample()
                next_sample += 60
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
    return sent, failed


def soak(name: str, pid: int, url: str, args: argparse.Namespace) -> list[str]:
    samples: list[tuple[float, float]] = [(0.0, rss_mb(pid))]
    started = time.monotonic()

    def sample() -> None:
        samples.append(((time.monotonic() - started) / 60, rss_mb(pid)))

    os.sched_setaffinity(0, {int(LOAD_CORE)})
    sent, failed = asyncio.run(load(url, args.rate, args.minutes * 60, sample))
    sample()
    half = [s for s in samples if s[0] >= args.minutes / 2]
    growth = half[-1][1] - half[0][1] if len(half) > 1 else 0.0
    per_minute = " / ".join(f"{mb:.0f}" for _, mb in samples)
    return [
        f"| {name} | {sent:,} | {failed} | {samples[0][1]:.0f} MB | "
        f"{max(mb for _, mb in samples):.0f} MB | {growth:+.1f} MB | {per_minute} |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=1000)
    args = parser.parse_args()
    ensure_tools()
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rampart-soak-") as tmp:
        workdir = Path(tmp)
        origin = free_port()
        with process(nginx_conf(workdir, origin, None), origin, LOAD_CORE):
            proxy, sidecar, admin = free_port(), free_port(), free_port()
            with process(nginx_conf(workdir, proxy, origin), proxy, PROXY_CORE) as nginx:
                rows += soak(
                    "nginx (1 worker)", nginx_worker_pid(nginx), f"http://127.0.0.1:{proxy}", args
                )
            command = sidecar_conf(workdir, sidecar, admin, origin, cache=True)
            with process(command, sidecar, PROXY_CORE) as proc:
                rows += soak(
                    "rampart-sidecar (all policies, memory cache)",
                    proc.pid,
                    f"http://127.0.0.1:{sidecar}",
                    args,
                )
    print(f"# soak, {datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores")
    print(
        "# command: .venv/bin/python bench/soak_bench.py "
        f"--minutes {args.minutes:g} --rate {args.rate}"
    )
    print(
        "| target | requests | failed | RSS at start | RSS max | growth, 2nd half "
        "| RSS each minute |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
