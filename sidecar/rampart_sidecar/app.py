"""Runs the sidecar: both listeners, then a graceful drain on SIGTERM.

Shutdown, in order: report not-ready, stop accepting connections, let requests
in flight finish for up to ``shutdown.drainTimeout``, close idle keep-alive
connections, exit 0. Responses sent while draining carry ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
from pathlib import Path

from aiohttp import web

from rampart_common.sidecar_settings import SidecarSettings, parse_host_port

from .admin import build_admin_app
from .cache import ResponseCache
from .metrics import Recorder
from .proxy import Proxy
from .server import ProxyServer

__all__ = ["run", "serve"]

log = logging.getLogger("rampart.sidecar")

# The cyclic garbage collector's first threshold once the sidecar serves (CPython's is
# 700). The count it is compared with grows with each container allocated and shrinks
# with each freed, so the objects of the requests in flight move it up and down; at 700,
# 64 concurrent requests cross it thousands of times a second, and each crossing walks
# every young object still alive (the requests in flight) for no garbage: the request
# path makes no reference cycles (tests/integration/test_heap.py). Measured in
# docs/decisions/collector.md: 7% of the CPU of a request the cache passes, then none.
COLLECTOR_THRESHOLD = 10_000


async def serve(
    settings: SidecarSettings,
    stop: asyncio.Event | None = None,
    address_file: Path | None = None,
    own_process: bool = False,
) -> None:
    """Serve until ``stop`` is set or SIGTERM/SIGINT arrives, then drain and return.

    ``own_process``: the process is the sidecar's alone, so once it listens its garbage
    collector is tuned for serving (``settle_heap``).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    recorder = Recorder()
    proxy = Proxy(settings, recorder)
    await proxy.start()
    cache = ResponseCache(settings.cache, recorder) if settings.cache is not None else None
    if cache is not None:
        await cache.start()
        proxy.cache = cache
        # stale-while-revalidate's background revalidation, through the proxy's gates
        cache.revalidate_with(proxy.fetch, settings.concurrency.max_in_flight)
    proxy_server = ProxyServer(proxy.handle, settings.server, on_error=proxy.count_rejection)
    host, port = parse_host_port(settings.listen)
    try:
        listener = await loop.create_server(
            proxy_server, host, port, reuse_address=True, backlog=1024
        )
    except OSError as error:
        raise ListenError(f"cannot listen on {settings.listen}: {error.strerror}") from None

    admin_runner = web.AppRunner(build_admin_app(proxy, cache), access_log=None)
    await admin_runner.setup()
    admin_host, admin_port = parse_host_port(settings.admin)
    admin_site = web.TCPSite(admin_runner, admin_host, admin_port, reuse_address=True)
    try:
        await admin_site.start()
    except OSError as error:
        listener.close()
        raise ListenError(f"cannot listen on {settings.admin} (admin): {error.strerror}") from None

    bound = listener.sockets[0].getsockname()
    admin_bound = admin_runner.addresses[0] if admin_runner.addresses else (admin_host, admin_port)
    addresses = {
        "proxy": f"http://{bound[0]}:{bound[1]}",
        "admin": f"http://{admin_bound[0]}:{admin_bound[1]}",
    }
    if address_file is not None:
        # The ports really bound (port 0: any free one), as Envoy's --admin-address-path:
        # written whole, then renamed, so a reader never sees half of it.
        partial = address_file.with_name(address_file.name + ".partial")
        partial.write_text(json.dumps(addresses) + "\n")
        partial.replace(address_file)
    if own_process:
        settle_heap()
    log.info("listening", extra={**addresses, "upstream": settings.upstream.url})
    try:
        await stop.wait()
    finally:
        log.info("draining", extra={"in_flight": proxy.in_flight})
        proxy.draining = True
        proxy_server.start_draining()
        listener.close()
        drained = await proxy.drain(settings.shutdown.drain_timeout)
        if not drained:
            log.warning("drain timeout reached", extra={"in_flight": proxy.in_flight})
        await proxy_server.shutdown(timeout=1.0)
        await proxy.close()
        if cache is not None:
            await cache.close()
        await admin_runner.cleanup()
        log.info("stopped")


def settle_heap() -> None:
    """Tune the garbage collector for serving, once started.

    What exists now (modules, settings, the pools) lives as long as the process:
    frozen, the collector's full passes no longer walk it (gc.freeze, as Instagram's
    servers do); those passes were 2/3 of its time. Garbage from start-up is collected
    first, so none of it is kept for good.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(COLLECTOR_THRESHOLD, older, oldest)


class ListenError(Exception):
    """A listener could not be opened (a port in use, a host not on this machine)."""


def run(settings: SidecarSettings, address_file: Path | None = None) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(settings, address_file=address_file, own_process=True))
    else:
        uvloop.run(serve(settings, address_file=address_file, own_process=True))
