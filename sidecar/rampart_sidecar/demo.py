"""A small application to put the sidecar in front of, for the README and the bench.

``python -m rampart_sidecar.demo --port 8080`` serves:
  /            a short greeting
  /slow?ms=N   answers after N milliseconds
  /flaky?p=P   fails with 503 with probability P
  /events      a server-sent event each second
"""

from __future__ import annotations

import argparse
import asyncio
import random

from aiohttp import web


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello from the demo application\n")


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
    return web.Response(text="slow but here\n")


async def _flaky(request: web.Request) -> web.Response:
    if random.random() < float(request.query.get("p", "0.5")):
        return web.Response(status=503, text="flaked\n")
    return web.Response(text="lucky\n")


async def _events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for number in range(1_000_000):
        await response.write(f"data: tick {number}\n\n".encode())
        await asyncio.sleep(1)
    return response


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", _hello)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/flaky", _flaky)
    app.router.add_get("/events", _events)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="demo upstream for rampart-sidecar")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(build_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
