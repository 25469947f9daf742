"""One upstream, four ways, one run: direct, behind nginx, behind HAProxy, behind the sidecar.

    .venv/bin/python bench/proxy_bench.py [--duration 10] [--connections 64] [--rate 1000]

The upstream is an nginx answering a fixed 13-byte body, so it is never the
bottleneck. Every proxy gets one core (``taskset``, core 0) and one worker:
nginx ``worker_processes 1`` with a keep-alive pool to the upstream, HAProxy
``nbthread 1``, the sidecar one process with every policy switched on (timeout,
retries, circuit breaker, concurrency limit, rate limit, metrics). The
upstream and the load generators share core 1. Access logs are off for all.

Then the same for cache hits: nginx with ``proxy_cache`` (``proxy_cache_valid
200 1h``) and the sidecar with its in-memory cache (``cache.ttl: 1h``); the
origin sends no caching headers, so each caches by its own configuration.

Three measurements each:
  * wrk at saturation (``--connections`` connections, one thread): requests/s,
    the median of ``--rounds`` runs (3), which the targets take in turns;
  * hey at a fixed ``--rate`` requests/s, evenly spaced (one connection, one
    request per tick): p50/p99 latency and what the proxy adds over direct;
  * hey at the same rate from 20 workers whose tickers fire together, so
    requests come in bursts of 20: the same, plus the proxy's CPU per 1,000
    requests/s. Bursts show the cost per request as queueing: the last of 20
    waits for the 19 before it.

Installs what it needs with scripts/install when a tool is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
PROXY_CORE = "0"
LOAD_CORE = "1"


@dataclass
class Result:
    name: str
    rps: float = 0.0
    p50_ms: float = 0.0  # bursts of 20
    p99_ms: float = 0.0
    even_p50_ms: float = 0.0  # evenly spaced
    even_p99_ms: float = 0.0
    errors: int = 0
    rss_mb: float = 0.0
    cpu_per_1k: float = 0.0  # cores busy per 1,000 req/s at the fixed rate
    failure: str = ""  # why this target could not be measured; the others still are
    rounds: list[float] = field(default_factory=list)  # req/s of each wrk round; rps: median


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stderr = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}: {stderr}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def ensure_tools() -> None:
    if all(shutil.which(tool) for tool in ("nginx", "haproxy", "wrk", "hey", "taskset")):
        return
    subprocess.run([str(ROOT / "scripts" / "install")], check=True)


@contextlib.contextmanager
def process(args: list[str], port: int, core: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        ["taskset", "-c", core, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def nginx_conf(
    workdir: Path, port: int, upstream_port: int | None, cache: bool = False
) -> list[str]:
    """nginx as the origin (``upstream_port`` None) or as a proxy, optionally caching."""
    prefix = workdir / ("origin" if not upstream_port else "cache" if cache else "proxy")
    (prefix / "logs").mkdir(parents=True)
    if upstream_port:
        caching = (
            f"proxy_cache_path {prefix}/cache keys_zone=hot:10m;\n"
            "    proxy_cache hot; proxy_cache_valid 200 1h;\n    "
            if cache
            else ""
        )
        routing = (
            caching + f"upstream app {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}\n"
            "    server {\n"
            f"        listen 127.0.0.1:{port} backlog=4096;\n"
            "        location / { proxy_pass http://app; proxy_http_version 1.1;"
            " proxy_set_header Connection ''; }\n"
            "    }"
        )
    else:
        routing = (
            "server {\n"
            f"        listen 127.0.0.1:{port} backlog=4096;\n"
            "        location / { return 200 'hello rampart'; }\n"
            "        location /no-store { add_header Cache-Control no-store;"
            " return 200 'hello rampart'; }\n"
            "    }"
        )
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    {routing}
}}
"""
    )
    return ["nginx", "-p", str(prefix), "-c", str(conf)]


def haproxy_conf(workdir: Path, port: int, upstream_port: int) -> list[str]:
    conf = workdir / "haproxy.cfg"
    conf.write_text(
        f"""global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend proxy
    bind 127.0.0.1:{port}
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:{upstream_port} maxconn 1000
"""
    )
    return ["haproxy", "-f", str(conf), "-db"]


def sidecar_conf(
    workdir: Path, port: int, admin: int, upstream_port: int, cache: bool = False
) -> list[str]:
    conf = workdir / f"sidecar-{port}.yaml"
    # The origin sends no caching headers; the cache's default TTL makes them cacheable,
    # as proxy_cache_valid does for nginx.
    caching = "cache: {ttl: 1h, memory: {maxEntries: 10000}}\n" if cache else ""
    conf.write_text(
        f"""listen: 127.0.0.1:{port}
admin: 127.0.0.1:{admin}
upstream: {{url: "http://127.0.0.1:{upstream_port}"}}
timeouts: {{request: 5s}}
retries: {{attempts: 2, perTryTimeout: 2s}}
circuitBreaker: {{consecutiveFailures: 5, openFor: 10s}}
concurrency: {{maxInFlight: 2000, maxQueued: 1000}}
rateLimit: {{requestsPerSecond: 10000000, burst: 10000000}}
logging: {{level: warning, accessLog: false}}
{caching}"""
    )
    return [sys.executable, "-m", "rampart_sidecar", "--config", str(conf)]


def nginx_worker_pid(master: subprocess.Popen[bytes]) -> int:
    """The worker's pid: it does the work, so its CPU and RSS are what count.

    With proxy_cache the master also has cache manager and loader children.
    """
    children = subprocess.run(
        ["pgrep", "-P", str(master.pid)], capture_output=True, text=True
    ).stdout.split()
    for child in children:
        with contextlib.suppress(OSError):
            if b"worker process" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    return master.pid


def run_wrk(url: str, connections: int, duration: int) -> tuple[float, int]:
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(n) for n in match.groups())
    return rps, errors


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_hey(url: str, rate: int, duration: int, workers: int) -> tuple[float, float, int]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            LOAD_CORE,
            "hey",
            "-z",
            f"{duration}s",
            "-c",
            str(workers),
            "-q",
            str(rate / workers),
            "-disable-compression",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    p50_line = re.search(r"50%+ in ([\d.]+) secs", out)
    p99_line = re.search(r"99%+ in ([\d.]+) secs", out)
    if p50_line is None or p99_line is None:
        raise RuntimeError(f"hey measured no latencies against {url}:\n{out[-2000:]}")
    p50 = float(p50_line.group(1)) * 1000
    p99 = float(p99_line.group(1)) * 1000
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    errors = sum(int(count) for code, count in codes if code != "200")
    return p50, p99, errors


def measure(name: str, url: str, pid: int | None, args: argparse.Namespace) -> Result:
    result = Result(name)
    subprocess.run(["wrk", "-t1", "-c8", "-d1s", url], capture_output=True, check=True)  # warm-up
    result.rps, wrk_errors = run_wrk(url, args.connections, args.duration)
    result.rounds.append(result.rps)
    before = cpu_seconds(pid) if pid else 0.0
    started = time.monotonic()
    result.p50_ms, result.p99_ms, hey_errors = run_hey(url, args.rate, args.duration, 20)
    if pid:
        busy = (cpu_seconds(pid) - before) / (time.monotonic() - started)
        result.cpu_per_1k = busy / (args.rate / 1000)
        result.rss_mb = rss_mb(pid)
    result.even_p50_ms, result.even_p99_ms, even_errors = run_hey(url, args.rate, args.duration, 1)
    result.errors = wrk_errors + hey_errors + even_errors
    return result


def table(results: list[Result], args: argparse.Namespace) -> str:
    direct = results[0]
    nginx = next(r for r in results if r.name.startswith("nginx"))
    rounds = f", median of {args.rounds}: lowest to highest" if args.rounds > 1 else ""
    lines = [
        f"| target | req/s (wrk, c={args.connections}{rounds}) | vs nginx | "
        f"p50 / p99 @{args.rate}/s evenly spaced | added | "
        f"p50 / p99 @{args.rate}/s in bursts of 20 | added | CPU per 1k req/s | RSS | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.failure:
            lines.append(f"| {r.name} | measurement failed: {r.failure} |||||||||")
            continue
        is_direct = r is direct
        even_added = (
            f"{r.even_p50_ms - direct.even_p50_ms:+.1f} / "
            f"{r.even_p99_ms - direct.even_p99_ms:+.1f} ms"
        )
        burst_added = f"{r.p50_ms - direct.p50_ms:+.1f} / {r.p99_ms - direct.p99_ms:+.1f} ms"
        spread = f" ({min(r.rounds):,.0f} to {max(r.rounds):,.0f})" if len(r.rounds) > 1 else ""
        lines.append(
            f"| {r.name} | {r.rps:,.0f}{spread} | "
            f"{'' if is_direct else f'{r.rps / nginx.rps:.0%}'} | "
            f"{r.even_p50_ms:.1f} / {r.even_p99_ms:.1f} ms | "
            f"{'' if is_direct else even_added} | "
            f"{r.p50_ms:.1f} / {r.p99_ms:.1f} ms | "
            f"{'' if is_direct else burst_added} | "
            f"{'' if is_direct else f'{r.cpu_per_1k:.2f} cores'} | "
            f"{'' if is_direct else f'{r.rss_mb:.0f} MB'} | {r.errors} |"
        )
    return "\n".join(lines)


def proxy_targets(
    workdir: Path, up_port: int, args: argparse.Namespace
) -> list[tuple[str, list[str], int, bool, str]]:
    """(name, command, port, is nginx, path) for every proxy measured, in table order."""
    ports = [free_port() for _ in range(8)]
    targets = [
        ("nginx (1 worker)", nginx_conf(workdir, ports[0], up_port), ports[0], True, "/"),
        ("HAProxy (1 thread)", haproxy_conf(workdir, ports[1], up_port), ports[1], False, "/"),
        (
            "rampart-sidecar (all policies)",
            sidecar_conf(workdir, ports[2], free_port(), up_port),
            ports[2],
            False,
            "/",
        ),
    ]
    if args.floor:
        targets.append(
            (
                "Python floor (uvloop + llhttp, GET only, no policies)",
                [
                    sys.executable,
                    str(ROOT / "bench" / "floor_proxy.py"),
                    str(ports[5]),
                    str(up_port),
                ],
                ports[5],
                False,
                "/",
            )
        )
    if not args.no_cache:
        targets += [
            (
                "nginx proxy_cache hits",
                nginx_conf(workdir, ports[3], up_port, cache=True),
                ports[3],
                True,
                "/",
            ),
            (
                "rampart-sidecar memory-cache hits",
                sidecar_conf(workdir, ports[4], free_port(), up_port, cache=True),
                ports[4],
                False,
                "/",
            ),
            # What the cache will not store must cost (nearly) nothing: a path the
            # origin marks no-store, with the cache off and on.
            (
                "rampart-sidecar no-store path, cache off",
                sidecar_conf(workdir, ports[6], free_port(), up_port),
                ports[6],
                False,
                "/no-store",
            ),
            (
                "rampart-sidecar no-store path, cache on",
                sidecar_conf(workdir, ports[7], free_port(), up_port, cache=True),
                ports[7],
                False,
                "/no-store",
            ),
        ]
    return targets


def more_rounds(
    results: list[Result],
    targets: list[tuple[str, list[str], int, bool, str]],
    up_port: int,
    args: argparse.Namespace,
) -> None:
    """One more wrk run of each target measured; each result's req/s is its runs' median."""
    by_name = {result.name: result for result in results if not result.failure}
    urls: list[tuple[str, list[str] | None, str, int]] = [
        ("direct", None, f"http://127.0.0.1:{up_port}/", 0)
    ]
    for name, command, port, _, path in targets:
        urls.append((name, command, f"http://127.0.0.1:{port}{path}", port))
    for name, proxy, url, port in urls:
        result = by_name.get(name)
        if result is None:
            continue
        with contextlib.ExitStack() as stack:
            if proxy is not None:
                stack.enter_context(process(proxy, port, PROXY_CORE))
            subprocess.run(["wrk", "-t1", "-c8", "-d1s", url], capture_output=True, check=True)
            rps, errors = run_wrk(url, args.connections, args.duration)
        result.rounds.append(rps)
        result.errors += errors
        result.rps = median(result.rounds)
        print(f"measured {name} again", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=1000, help="fixed rate for latency, req/s")
    parser.add_argument("--no-cache", action="store_true", help="skip the cache-hit targets")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="wrk runs per target, taking turns (each target one, then again): the median",
    )
    parser.add_argument(
        "--floor", action="store_true", help="also the bare uvloop + llhttp proxy (floor_proxy.py)"
    )
    args = parser.parse_args()
    ensure_tools()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 cores: one for the proxy, one for the upstream and the load")

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="rampart-bench-") as tmp:
        workdir = Path(tmp)
        up_port = free_port()
        with process(nginx_conf(workdir, up_port, None), up_port, LOAD_CORE):
            results.append(measure("direct", f"http://127.0.0.1:{up_port}/", None, args))
            targets = proxy_targets(workdir, up_port, args)
            for name, command, port, is_nginx, path in targets:
                with process(command, port, PROXY_CORE) as proc:
                    pid = nginx_worker_pid(proc) if is_nginx else proc.pid
                    url = f"http://127.0.0.1:{port}{path}"
                    try:
                        results.append(measure(name, url, pid, args))
                    except RuntimeError as error:
                        results.append(Result(name, failure=str(error).splitlines()[0]))
                    print(f"measured {name}", file=sys.stderr, flush=True)
            # The host's load drifts over minutes (the same build measured 18k and 31k req/s
            # an hour apart); more wrk rounds, in turns, keep one slow minute from deciding a
            # ratio between targets measured minutes apart.
            for _ in range(args.rounds - 1):
                more_rounds(results, targets, up_port, args)

    print(
        f"# proxy benchmark, {datetime.date.today()}, {platform.node()}, "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    print(
        f"# command: .venv/bin/python bench/proxy_bench.py --duration {args.duration} "
        f"--connections {args.connections} --rate {args.rate}"
        + (" --no-cache" if args.no_cache else "")
        + (" --floor" if args.floor else "")
        + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
    )
    print(table(results, args))


if __name__ == "__main__":
    main()
