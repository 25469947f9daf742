"""A client's request body relayed to the upstream as it arrives.

Kept apart from ``proxy`` because it is an async generator, which mypyc (that
compiles ``proxy``, see setup.py) cannot compile; a body streamed this way is
large, so the interpreter's cost per chunk does not matter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .errors import BadMessage, BodyTooLarge
from .messages import Request

__all__ = ["RequestBodyStream"]


class RequestBodyStream:
    """The client's body relayed as it arrives, remembering why it stopped early.

    The upstream pool writes a request body in a task of its own, so an error raised here
    may reach the caller only as a broken connection; ``failure`` keeps the real
    reason (the client's fault, not the upstream's). ``waiting_for_client`` says
    whether, right now, the relay is waiting for the client's next bytes: an
    attempt that times out then timed out on the client, not on the upstream,
    which cannot be expected to answer a request it has not had whole.
    ``trailers`` are the client's trailer fields that may go on, once the body ended.
    """

    def __init__(self, request: Request, prefix: bytes, limit: int, idle: float) -> None:
        assert request.content is not None
        self._content = request.content
        self._prefix = prefix
        self._limit = limit
        self._idle = idle
        self.failure: tuple[int, str] | None = None
        self.malformed: BadMessage | None = None  # when the failure is the body's framing
        self.waiting_for_client = False

    @property
    def trailers(self) -> bytes:
        return self._content.trailers

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = len(self._prefix)
        if self._prefix:
            yield self._prefix
        while True:
            self.waiting_for_client = True
            try:
                chunk = await self._content.readany(self._idle)
            except TimeoutError:
                self.failure = (408, "client-body-timeout")
                raise
            except BadMessage as error:
                self.failure = (error.status, error.reason)
                self.malformed = error
                raise
            except ConnectionError:
                self.failure = (499, "client-closed-request")
                raise
            finally:
                self.waiting_for_client = False
            if not chunk:
                return
            sent += len(chunk)
            if sent > self._limit:
                self.failure = (413, "body-too-large")
                raise BodyTooLarge
            yield chunk
