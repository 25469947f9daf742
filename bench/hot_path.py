"""The sidecar's request path in one process, without sockets: for profilers.

    .venv/bin/python bench/hot_path.py [--requests 50000] [--rounds 3] [--browser] [--cache]
    .venv/bin/python bench/hot_path.py --bytecodes [--requests 3000]
    py-spy record -r 1000 -f raw -o hot.txt -- .venv/bin/python bench/hot_path.py

The real ``HttpConnection``, ``Proxy`` (every policy on, as in proxy_bench)
and ``UpstreamPool`` connection, with transports that hand bytes straight
back: a request goes in, the upstream's canned answer (nginx's fields and a
615-byte body) comes back on the next loop iteration, and the next request
follows the answer (with ``--cache``, the memory cache answers all but the
first). No kernel time, no other process, so a profile shows only
the Python of the request path, and the CPU per request moves only with it.
The absolute number is not the real one (bench/cpu_per_request.py is); the
differences between two versions are.

``--bytecodes`` counts the Python bytecodes each request executes instead,
by function (``sys.settrace`` with opcode events, so it runs ~50x slower).
Unlike CPU time it does not move with how busy the host is: the same code
gives the same count, so a change to the request path can be judged by it in
seconds. Most of the CPU per request is the interpreter's loop (perf:
``_PyEval_EvalFrameDefault`` is the top symbol), so fewer bytecodes is
mostly less CPU, though one bytecode may call into C that costs more.
The compiled modules (setup.py) run no bytecodes: for a count of the whole
path, install without compiling (``RAMPART_PURE_PYTHON=1 pip install -e .``);
``--bytecodes`` says which modules it cannot see.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvloop

from rampart_common.sidecar_settings import SidecarSettings
from rampart_sidecar import upstream
from rampart_sidecar.cache import ResponseCache
from rampart_sidecar.metrics import Recorder
from rampart_sidecar.proxy import Proxy
from rampart_sidecar.server import ProxyServer

CURL_LIKE = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
BROWSER_LIKE = (
    b"GET /index.html?q=1 HTTP/1.1\r\nHost: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nCookie: session=abcdef0123456789\r\n"
    b"Connection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n"
)
NGINX_ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 23 Nov 2026 19:00:00 GMT\r\n"
    b"Content-Type: text/html\r\nContent-Length: 615\r\n"
    b"Last-Modified: Mon, 23 Nov 2026 10:00:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "65a1-267"\r\nAccept-Ranges: bytes\r\n\r\n' + b"x" * 615
)
SETTINGS = {
    "listen": "127.0.0.1:1",
    "upstream": {"url": "http://127.0.0.1:1"},
    "timeouts": {"request": "5s"},
    "retries": {"attempts": 2, "perTryTimeout": "2s"},
    "circuitBreaker": {"consecutiveFailures": 5, "openFor": "10s"},
    "concurrency": {"maxInFlight": 2000, "maxQueued": 1000},
    "rateLimit": {"requestsPerSecond": 10000000, "burst": 10000000},
    "logging": {"level": "warning", "accessLog": False},
}


class LoopbackTransport:
    """Enough of a transport for both protocols: every write goes to ``on_write``."""

    def __init__(self, on_write: Callable[[bytes], None]) -> None:
        self.on_write = on_write

    def write(self, data: bytes) -> None:
        self.on_write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class BytecodeCounter:
    """A trace function counting the bytecodes executed, by (file, function)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> BytecodeCounter:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            self.counts[(code.co_filename, code.co_name)] += 1
        return self

    def report(self, requests: int) -> None:
        ours = Counter(
            {
                (file.rsplit("/", 1)[-1], name): count
                for (file, name), count in self.counts.items()
                if file != __file__  # the stand-in client and upstream are not the sidecar's
            }
        )
        compiled = sorted(
            name.rsplit(".", 1)[-1]
            for name, module in sys.modules.items()
            if name.startswith("rampart_sidecar.")
            and (getattr(module, "__file__", None) or "").endswith(".so")
        )
        if compiled:
            print(f"not counted, compiled (setup.py): {', '.join(compiled)}")
        print(f"bytecodes per request: {ours.total() / requests:.0f}")
        for (file, name), count in ours.most_common(25):
            print(f"{count / requests:8.1f}  {file}:{name}")


async def run(
    requests: int, request: bytes, cached: bool, counter: BytecodeCounter | None = None
) -> tuple[float, float]:
    """User and system CPU seconds per request."""
    loop = asyncio.get_running_loop()
    caching = {"cache": {"ttl": "1h", "memory": {"maxEntries": 10000}}} if cached else {}
    settings = SidecarSettings.model_validate(SETTINGS | caching)
    recorder = Recorder()
    proxy = Proxy(settings, recorder)
    await proxy.start()
    if settings.cache is not None:
        proxy.cache = ResponseCache(settings.cache, recorder)
    pool = proxy.pool
    connection = upstream._Connection(pool)

    def answer_soon(_: bytes) -> None:
        loop.call_soon(connection.data_received, NGINX_ANSWER)

    connection.connection_made(LoopbackTransport(answer_soon))  # type: ignore[arg-type]
    pool._open.add(connection)
    pool._idle.append(connection)
    client = ProxyServer(proxy.handle, settings.server, on_error=proxy.count_rejection)()
    finished = loop.create_future()
    answered = 0

    def on_answer(data: bytes) -> None:
        nonlocal answered
        if not data.startswith(b"HTTP/1.1 200 "):
            finished.set_exception(RuntimeError(f"unexpected answer: {data[:200]!r}"))
            return
        answered += 1
        if answered == requests:
            finished.set_result(None)
        else:
            loop.call_soon(client.data_received, request)

    client.connection_made(LoopbackTransport(on_answer))  # type: ignore[arg-type]
    before = os.times()
    if counter is not None:
        sys.settrace(counter)
    try:
        client.data_received(request)
        await finished
    finally:
        sys.settrace(None)
    after = os.times()
    await proxy.close()
    return (after.user - before.user) / requests, (after.system - before.system) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="a browser's 9 fields, not 1")
    parser.add_argument("--cache", action="store_true", help="memory-cache hits")
    parser.add_argument(
        "--bytecodes", action="store_true", help="count bytecodes per request, by function"
    )
    args = parser.parse_args()
    request = BROWSER_LIKE if args.browser else CURL_LIKE
    if args.bytecodes:
        uvloop.run(run(500, request, args.cache))  # imports and first-use caches out of the count
        counter = BytecodeCounter()
        uvloop.run(run(args.requests, request, args.cache, counter))
        counter.report(args.requests)
        return
    for _ in range(args.rounds):
        user, system = uvloop.run(run(args.requests, request, args.cache))
        print(f"user {1e6 * user:.1f} µs, system {1e6 * system:.1f} µs per request", flush=True)


if __name__ == "__main__":
    main()
