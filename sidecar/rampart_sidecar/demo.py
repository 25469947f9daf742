"""A small application to put the sidecar in front of, for the README and the bench.

``python -m rampart_sidecar.demo --port 8080`` serves:
  /            a short greeting
  /slow?ms=N   answers after N milliseconds
  /flaky?p=P   fails with 503 with probability P (?fail=N&key=K: the first N calls for K)
  /events      a server-sent event each second
  POST /outage?seconds=N   every other route answers 503 for N seconds (a stale answer)

``--error-rate P`` makes every route answer 503 with probability P: a broken
release for canary rollouts to catch (the e2e tier uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello from the demo application\n")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
    return web.Response(text="slow but here\n")


_failures_left: dict[str, int] = {}


async def _flaky(request: web.Request) -> web.Response:
    """``?p=P``: fail at random; ``?fail=N&key=K``: the first N calls for K fail (no luck
    involved, for tests and for showing exactly N retries)."""
    if "fail" in request.query:
        key = request.query.get("key", "")
        left = _failures_left.setdefault(key, int(request.query["fail"]))
        if left > 0:
            _failures_left[key] = left - 1
            return web.Response(status=503, text="flaked\n")
        return web.Response(text="lucky\n")
    if random.random() < float(request.query.get("p", "0.5")):
        return web.Response(status=503, text="flaked\n")
    return web.Response(text="lucky\n")


STREAMS = web.AppKey("streams", list)  # the event streams open now (one entry each)


async def _events(request: web.Request) -> web.StreamResponse:
    """``?every=S``: seconds between events (default 1)."""
    every = float(request.query.get("every", "1"))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    request.app[STREAMS].append(response)
    try:
        for number in range(1_000_000):
            await response.write(f"data: tick {number}\n\n".encode())
            await asyncio.sleep(every)
    except ConnectionResetError:
        pass  # the client left: the usual end of an event stream, not an error
    finally:
        request.app[STREAMS].remove(response)
    return response


def build_app(error_rate: float = 0.0) -> web.Application:
    down_until = 0.0  # loop time until which every route fails (POST /outage)

    @web.middleware
    async def broken(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/outage" and asyncio.get_running_loop().time() < down_until:
            return web.Response(status=503, text="outage\n")
        if random.random() < error_rate:
            return web.Response(status=503, text="this release is broken\n")
        return await handler(request)

    async def outage(request: web.Request) -> web.Response:
        nonlocal down_until
        seconds = float(request.query.get("seconds", "30"))
        down_until = asyncio.get_running_loop().time() + seconds
        return web.Response(text=f"every route answers 503 for {seconds:g} s\n")

    app = web.Application(middlewares=[broken])
    app[STREAMS] = []
    app.router.add_get("/", _hello)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/flaky", _flaky)
    app.router.add_get("/events", _events)
    app.router.add_post("/outage", outage)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="demo upstream for rampart-sidecar")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests failed")
    args = parser.parse_args()
    app = build_app(args.error_rate)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
