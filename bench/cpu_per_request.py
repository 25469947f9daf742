"""CPU time per request of the sidecar under saturation, split into user and kernel time.

    .venv/bin/python bench/cpu_per_request.py [--runs 3] [--duration 5] [--cache] [--floor]
        [--access-log] [--path /no-store]
    .venv/bin/python bench/cpu_per_request.py --sidecar-path ../other-worktree/sidecar

The measure to compare two versions of the request path by: req/s moves with
how busy the host is (up to 30% between runs here), the CPU each request
takes much less. The setting is proxy_bench's: the proxy pinned to core 0,
an nginx origin and wrk (64 connections) on core 1, the sidecar with every
policy on. The CPU is the proxy process's own (``/proc/PID/stat``) over one wrk
run, after a one-second warm-up.

``--sidecar-path`` runs another copy of ``rampart_sidecar`` (a worktree of an
older commit, say) in the same run, before ours, for a side-by-side.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from proxy_bench import (
    LOAD_CORE,
    PROXY_CORE,
    ROOT,
    ensure_tools,
    free_port,
    nginx_conf,
    process,
    sidecar_conf,
    wait_for_port,
)


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def requests_done(wrk_output: str) -> int:
    match = re.search(r"(\d+) requests in", wrk_output)
    if match is None:
        raise RuntimeError(f"wrk printed no request count:\n{wrk_output}")
    return int(match.group(1))


def measure(
    command: list[str], port: int, duration: int, env: dict[str, str], path: str = "/"
) -> str:
    url = f"http://127.0.0.1:{port}{path}"
    proc = subprocess.Popen(
        ["taskset", "-c", PROXY_CORE, *command],
        env=env,
        stdout=subprocess.DEVNULL,  # where the log lines go, access lines included
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        subprocess.run(["wrk", "-t1", "-c8", "-d1s", url], capture_output=True, check=True)
        user0, sys0 = cpu_times(proc.pid)
        out = subprocess.run(
            ["taskset", "-c", LOAD_CORE, "wrk", "-t1", "-c64", f"-d{duration}s", url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        user1, sys1 = cpu_times(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
    n = requests_done(out)
    user, kernel = 1e6 * (user1 - user0) / n, 1e6 * (sys1 - sys0) / n
    return f"| {n / duration:,.0f} | {user + kernel:.1f} | {user:.1f} | {kernel:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per run")
    parser.add_argument(
        "--cache", action="store_true", help="the memory cache on: hits, unless --path says"
    )
    parser.add_argument(
        "--path",
        default="/",
        help="the path asked for: the origin marks /no-store so (the cache's pass path)",
    )
    parser.add_argument("--floor", action="store_true", help="also bench/floor_proxy.py")
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="the default logging (level info, an access line per request, to /dev/null)",
    )
    parser.add_argument("--sidecar-path", help="another rampart_sidecar's parent folder")
    args = parser.parse_args()
    ensure_tools()
    print("| proxy | req/s (wrk, c=64) | CPU µs per request | user | kernel |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        upstream = free_port()
        with process(nginx_conf(workdir, upstream, None), upstream, LOAD_CORE):
            versions = [("rampart-sidecar", os.environ.copy())]
            if args.sidecar_path:
                other = dict(os.environ, PYTHONPATH=str(Path(args.sidecar_path).resolve()))
                versions.insert(0, (f"rampart-sidecar from {args.sidecar_path}", other))
            for _ in range(args.runs):
                for name, env in versions:
                    port = free_port()
                    command = sidecar_conf(workdir, port, free_port(), upstream, args.cache)
                    if args.access_log:
                        conf = Path(command[-1])
                        quiet = "logging: {level: warning, accessLog: false}"
                        text = conf.read_text()
                        assert quiet in text
                        conf.write_text(
                            text.replace(quiet, "logging: {level: info, accessLog: true}")
                        )
                    row = measure(command, port, args.duration, env, args.path)
                    print(f"| {name} {row}", flush=True)
                if args.floor:
                    port = free_port()
                    floor = [sys.executable, str(ROOT / "bench" / "floor_proxy.py")]
                    command = [*floor, str(port), str(upstream)]
                    row = measure(command, port, args.duration, os.environ.copy())
                    print(f"| Python floor {row}", flush=True)


if __name__ == "__main__":
    main()
