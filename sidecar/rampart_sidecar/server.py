"""The proxy listener's HTTP server: aiohttp's, with its own answers to unparsable requests.

aiohttp answers a request it cannot parse (bad request line, oversized
header, broken chunking) before any handler runs, and logs a traceback for
each. Here those answers carry ``X-Rampart-Reason: bad-request`` like every
other answer the sidecar makes itself, are counted, and are logged as one
line: a scanner sending garbage must not be able to flood the logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

__all__ = ["ProxyServer"]

log = logging.getLogger("rampart.server")


class _ProxyRequestHandler(RequestHandler):
    on_error: Callable[[str], None] = staticmethod(lambda reason: None)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        reason = "bad-request" if status < 500 else "internal-error"
        if status < 500:
            log.info("unparsable request", extra={"client": request.remote, "error": message})
        else:
            log.error("unhandled error", exc_info=exc, extra={"client": request.remote})
        self.on_error(reason)
        response = web.Response(
            status=status, text=reason + "\n", headers={"X-Rampart-Reason": reason}
        )
        response.force_close()
        return response


class ProxyServer(web.Server):
    """``web.Server`` whose connections use ``_ProxyRequestHandler``."""

    def __init__(self, *args: Any, on_error: Callable[[str], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handler_class: type[_ProxyRequestHandler] = type(
            "ProxyRequestHandler", (_ProxyRequestHandler,), {"on_error": staticmethod(on_error)}
        )

    def __call__(self) -> RequestHandler:
        return self._handler_class(self, loop=self._loop, **self._kwargs)
