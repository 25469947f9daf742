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


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    """A query parameter as a number within bounds, or a 400 saying which."""
    text = request.query.get(name)
    try:
        value = default if text is None else float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # NaN fails too
        raise web.HTTPBadRequest(text=f"{name}: a number from {low:g} to {high:g}\n")
    return value


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(_number(request, "ms", 1000, 0, 600_000) / 1000)
    return web.Response(text="slow but here\n")


FAILURES_LEFT = web.AppKey("failures_left", dict)  # ?fail=N&key=K: K -> failures to go
MAX_KEYS = 10_000  # a client inventing keys cannot grow it without end


async def _flaky(request: web.Request) -> web.Response:
    """``?p=P``: fail at random; ``?fail=N&key=K``: the first N calls for K fail (no luck
    involved, for tests and for showing exactly N retries)."""
    if "fail" in request.query:
        failures_left: dict[str, int] = request.app[FAILURES_LEFT]
        key = request.query.get("key", "")
        if key not in failures_left and len(failures_left) >= MAX_KEYS:
            failures_left.clear()
        left = failures_left.setdefault(key, int(_number(request, "fail", 0, 0, 1000)))
        if left > 0:
            failures_left[key] = left - 1
            return web.Response(status=503, text="flaked\n")
        return web.Response(text="lucky\n")
    if random.random() < _number(request, "p", 0.5, 0, 1):
        return web.Response(status=503, text="flaked\n")
    return web.Response(text="lucky\n")


STREAMS = web.AppKey("streams", list)  # the event streams open now (one entry each)


async def _events(request: web.Request) -> web.StreamResponse:
    """``?every=S``: seconds between events (default 1)."""
    every = _number(request, "every", 1, 0.01, 3600)  # never a busy loop
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
        seconds = _number(request, "seconds", 30, 0, 86_400)
        down_until = asyncio.get_running_loop().time() + seconds
        return web.Response(text=f"every route answers 503 for {seconds:g} s\n")

    app = web.Application(middlewares=[broken])
    app[STREAMS] = []
    app[FAILURES_LEFT] = {}
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
