"""A client's request body relayed to the upstream as it arrives.

Kept apart from ``proxy`` because it is an async generator, which mypyc (that
compiles ``proxy``, see setup.py) cannot compile; a body streamed this way is
large, so the interpreter's cost per chunk does not matter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .errors import BodyTooLarge
from .messages import Request

__all__ = ["RequestBodyStream"]


class RequestBodyStream:
    """The client's body relayed as it arrives, remembering why it stopped early.

    The upstream pool writes a request body in a task of its own, so an error raised here
    may reach the caller only as a broken connection; ``failure`` keeps the real
    reason (the client's fault, not the upstream's).
    """

    def __init__(self, request: Request, prefix: bytes, limit: int, idle: float) -> None:
        assert request.content is not None
        self._content = request.content
        self._prefix = prefix
        self._limit = limit
        self._idle = idle
        self.failure: tuple[int, str] | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = len(self._prefix)
        if self._prefix:
            yield self._prefix
        while True:
            try:
                chunk = await self._content.readany(self._idle)
            except TimeoutError:
                self.failure = (408, "client-body-timeout")
                raise
            if not chunk:
                return
            sent += len(chunk)
            if sent > self._limit:
                self.failure = (413, "body-too-large")
                raise BodyTooLarge
            yield chunk
