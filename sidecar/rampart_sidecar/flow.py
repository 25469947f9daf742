"""Back-pressure both ways, for the protocols on each side of the proxy.

``BodyBuffer`` is a message body arriving from a socket: the protocol feeds
it, a handler reads it. Both sides use it: the client's request body
(``server``) and the application's response body (``upstream``). Reading
pauses the socket above a high-water mark of unread bytes and resumes it once
they are taken, so a slow reader holds back a fast sender instead of
buffering without end.

``WriteFlow`` turns a transport's ``pause_writing``/``resume_writing`` into
an awaitable ``drain()``, as asyncio's streams do, so a writer waits while the
peer is not reading.

A read may wait at most ``timeout`` seconds for the next bytes. The timer is a
plain ``call_later`` handle armed only when the read has to wait: most bodies
of small messages have arrived with their head, and then nothing is armed.
The loop is passed in rather than looked up: in CPython 3.11 every
``asyncio.get_running_loop()`` is a ``getpid()`` system call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Protocol

__all__ = ["BodyBuffer", "Paced", "WriteFlow"]

HIGH_WATER: Final = 256 * 1024


class Paced(Protocol):
    """The protocol a body arrives on: told to stop reading while the body waits unread."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class BodyBuffer:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        source: Paced,
        on_first_read: Callable[[], None] | None = None,
    ) -> None:
        self._loop = loop
        # The protocol itself, not its two bound methods: making those cost 650
        # instructions a body, and most bodies never pause.
        self._source = source
        self._on_first_read = on_first_read
        # A list, not a deque: compiled, its ops are direct calls, where a deque is
        # looked up by name and called generically (and only the end is appended to).
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._done = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        # A chunked request's trailer fields that may go on, encoded; set before finish().
        self.trailers = b""

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived (read or not)."""
        return self._done

    async def readany(self, timeout: float | None = None) -> bytes:
        """What has arrived since the last read, waiting for it if need be; b"" at the end."""
        if self._on_first_read is not None:
            first, self._on_first_read = self._on_first_read, None
            first()
        while not self._chunks:
            if self.error is not None:
                raise self.error
            if self._done:
                return b""
            loop = self._loop
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return self._take_buffered()

    def take(self) -> bytes | None:
        """The whole body if it has all arrived and can be had without waiting, else None.

        ``read()`` without a coroutine, for the common case of a small body
        that came with its head.
        """
        if not self._done or self.error is not None or self._on_first_read is not None:
            return None
        return self._take_buffered()

    def _take_buffered(self) -> bytes:
        """Everything buffered, as one bytes; reading resumes if it was paused."""
        chunks = self._chunks
        chunk = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self._source.resume_reading()
        return chunk

    async def read(self, timeout: float | None = None) -> bytes:
        """The rest of the body; ``timeout`` bounds each wait, not the whole."""
        parts = []
        while chunk := await self.readany(timeout):
            parts.append(chunk)
        return b"".join(parts)

    # -- what the protocol tells it -------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._done:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._source.pause_reading()
        self._wake()

    def finish(self) -> None:
        self._done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._done and self.error is None:
            self.error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class WriteFlow(asyncio.Protocol):
    """A protocol whose writers ``await drain()`` while the transport's buffer is full."""

    loop: asyncio.AbstractEventLoop
    closed: bool
    _writable: asyncio.Future[None] | None = None

    def closed_error(self) -> ConnectionError:
        """What ``drain()`` raises once the connection is gone."""
        return ConnectionResetError("the connection is closed")

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def release_writers(self) -> None:
        """On connection loss: a writer waiting to drain gets ``closed_error()``."""
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(self.closed_error())
            self._writable.exception()  # retrieved here; the writer gets it by awaiting

    async def drain(self) -> None:
        if self.closed:
            raise self.closed_error()
        if self._writable is not None:
            await self._writable
