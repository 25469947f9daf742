"""A real HTTP upstream the tests control: slow, failing, flaky or dead on demand.

It runs an aiohttp server on its own event loop in a thread, so the sidecar
(a real process) talks to it over loopback exactly as it would to an app.

Paths:
  /app             answers 200, or 500 for the share ``error_rate`` of requests
  /echo            answers JSON with the method, path, query, headers and body digest
  /delay?ms=N      answers after N ms (the count of such requests in progress is kept)
  /status/N        answers status N
  /flaky/KEY?fail=N  the first N requests for KEY answer 503, the rest 200
  /bytes?n=N       N bytes of a known pattern, streamed in chunks
  /upload          reads the whole body and answers its sha256 and length
  /sse?every=S&n=N N server-sent events, S seconds apart
  /ws              a WebSocket echo server that speaks the subprotocol "chat"
  /c/NAME          a response shaped by the query, for cache tests: cc= (Cache-Control),
                   vary=, expires= (seconds from now), cookie=1, ms=, size=, status=,
                   location=, content_location=, etag= (and 304 to an If-None-Match
                   that matches, with cc304= as its Cache-Control), modified= (seconds ago);
                   the body names the request number and the varying headers, and
                   ``failing`` makes every /c/ path answer 503
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from aiohttp import WSMsgType, web


def pattern(n: int) -> bytes:
    """The bytes /bytes?n=N serves."""
    block = bytes(range(256))
    return (block * (n // 256 + 1))[:n]


class Upstream:
    def __init__(self, port: int = 0) -> None:
        # 0: the kernel picks a free port at the first start (read back then), which
        # a restart after stop() keeps.
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.hits: Counter[str] = Counter()  # path -> requests received
        self.in_progress = 0
        self.shaped_in_progress = self.shaped_peak = 0  # /c/ requests with ms=, at once
        self.last_request: dict[str, Any] = {}
        self.peers: set[tuple[str, int]] = set()
        self.failing = False  # /c/ paths answer 503 while set
        self.error_rate = 0.0  # share of /app requests answered 500
        self.sse_sent: list[float] = []  # when each /sse event was written (monotonic)
        self._app_requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None

    # -- control from the test thread -------------------------------------

    def _call(self, make: Callable[[], Any]) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(make(), self._loop)
        return future.result(timeout=10)

    def start(self) -> None:
        self._call(self._start)

    def stop(self) -> None:
        """Close the listener and every connection: the upstream is dead."""
        self._call(self._stop)

    def close(self) -> None:
        if self._runner is not None:
            self.stop()
        self._call(self._cancel_pending)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def open_connections(self) -> int:
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    def total_hits(self, prefix: str = "") -> int:
        return sum(count for path, count in self.hits.items() if path.startswith(prefix))

    # -- server -----------------------------------------------------------

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_route("*", "/app", self._app)
        app.router.add_route("*", "/delay", self._delay)
        app.router.add_route("*", "/status/{code}", self._status)
        app.router.add_route("*", "/flaky/{key}", self._flaky)
        app.router.add_get("/bytes", self._bytes)
        app.router.add_post("/upload", self._upload)
        app.router.add_get("/sse", self._sse)
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/c/{name}", self._shaped)
        app.middlewares.append(self._count)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        if not self.port:
            self.port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{self.port}"

    async def _cancel_pending(self) -> None:
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _count(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        self.hits[request.path] += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add(peer[:2])
        self.in_progress += 1
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            self.in_progress -= 1

    async def _app(self, request: web.Request) -> web.Response:
        # Exactly ``error_rate`` of the requests fail, spread evenly.
        self._app_requests += 1
        n, rate = self._app_requests, self.error_rate
        failed = int(n * rate) > int((n - 1) * rate)
        return web.Response(status=500 if failed else 200, text="app\n")

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.last_request = {
            "method": request.method,
            "path": request.path,
            "query": request.rel_url.raw_query_string,
            "raw_path": request.raw_path,
            "headers": {k: v for k, v in request.headers.items()},
            "header_list": list(request.headers.items()),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_length": len(body),
        }
        return web.json_response(
            self.last_request,
            headers={
                "X-Upstream": "yes",
                "Keep-Alive": "timeout=5",
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "must-not-pass",
                "Set-Cookie": "session=abc",
                "X-Request-ID": "the-upstream-s-own",  # the sidecar's must win
            },
        )

    async def _delay(self, request: web.Request) -> web.Response:
        await asyncio.sleep(int(request.query.get("ms", "1000")) / 1000)
        return web.Response(text="late\n")

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="as asked\n")

    async def _flaky(self, request: web.Request) -> web.Response:
        key = "/flaky/" + request.match_info["key"]
        if self.hits[key] <= int(request.query.get("fail", "1")):
            return web.Response(status=503, text="flaked\n")
        return web.Response(text="recovered\n")

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        data = pattern(int(request.query["n"]))
        response = web.StreamResponse()
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        for start in range(0, len(data), 65536):
            await response.write(data[start : start + 65536])
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        length = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
        return web.json_response({"sha256": digest.hexdigest(), "length": length})

    async def _sse(self, request: web.Request) -> web.StreamResponse:
        every = float(request.query.get("every", "0.5"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for number in range(int(request.query.get("n", "3"))):
            self.sse_sent.append(time.monotonic())
            await response.write(f"data: {number}\n\n".encode())
            await asyncio.sleep(every)
        await response.write_eof()
        return response

    async def _shaped(self, request: web.Request) -> web.Response:  # noqa: C901 - one branch per response shape a test asks for
        query = request.query
        if "ms" in query:
            self.shaped_in_progress += 1
            self.shaped_peak = max(self.shaped_peak, self.shaped_in_progress)
            try:
                await asyncio.sleep(int(query["ms"]) / 1000)
            finally:
                self.shaped_in_progress -= 1
        if self.failing:
            return web.Response(status=503, text="failing on purpose\n")
        number = self.hits[request.path]
        self.last_request = {"path": request.path, "headers": dict(request.headers)}
        etag = query.get("etag")
        if etag is not None and request.headers.get("If-None-Match") == f'"{etag}"':
            # A revalidation that matches: 304 with the fields given (cc=, and x=).
            not_modified = {"ETag": f'"{etag}"', "X-Revalidation": str(number)}
            if "cc304" in query:
                not_modified["Cache-Control"] = query["cc304"]
            return web.Response(status=304, headers=not_modified)
        text = (
            f"{request.path} #{number} lang={request.headers.get('Accept-Language', '-')} "
            f"auth={request.headers.get('Authorization', '-')}\n"
        )
        body = text.encode()
        if "size" in query:
            body = body.ljust(int(query["size"]), b".")
        headers = {}
        if "cc" in query:
            headers["Cache-Control"] = query["cc"]
        if "vary" in query:
            headers["Vary"] = query["vary"]
        if etag is not None:
            headers["ETag"] = f'"{etag}"'
        if "modified" in query:  # seconds ago
            from email.utils import formatdate

            headers["Last-Modified"] = formatdate(time.time() - int(query["modified"]), usegmt=True)
        if "expires" in query:
            from email.utils import formatdate

            headers["Expires"] = formatdate(time.time() + int(query["expires"]), usegmt=True)
        for field in ("Location", "Content-Location"):
            if field.lower().replace("-", "_") in query:
                headers[field] = query[field.lower().replace("-", "_")]
        if query.get("cookie") == "1":
            headers["Set-Cookie"] = f"session={number}"
        status = int(query.get("status", "200"))
        if query.get("chunked") == "1":
            response = web.StreamResponse(status=status, headers=headers)
            await response.prepare(request)
            for start in range(0, len(body), 1000):
                await response.write(body[start : start + 1000])
            await response.write_eof()
            return response  # type: ignore[return-value]
        return web.Response(status=status, body=body, headers=headers)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=["chat"])
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                if message.data == "close-please":
                    await ws.close(code=4001, message=b"asked to")
                    break
                await ws.send_str(json.dumps({"echo": message.data, "protocol": ws.ws_protocol}))
            elif message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws
