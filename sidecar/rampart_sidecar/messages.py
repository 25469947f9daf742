"""One client request and the answers to it, as the proxy listener hands them to the proxy.

These are deliberately smaller than a web framework's: the sidecar only
relays, so a request is its parsed head plus a body that arrives on demand,
and a response is a status, headers and either a whole body (``Response``) or
a body written as it arrives (``StreamResponse``). ``server.HttpConnection``
parses the requests and writes the answers.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

from multidict import CIMultiDict, CIMultiDictProxy

from .flow import BodyBuffer
from .headers import RequestHead, ResponseHead, decode_fields

if TYPE_CHECKING:
    from .server import HttpConnection

__all__ = ["Request", "Response", "StreamResponse", "reason_phrase"]

_REASONS: Final = {status.value: status.phrase for status in HTTPStatus}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "")


class Request:
    """A client request: its head, parsed, and its body, to be read.

    ``raw_path`` and ``query_string`` are exactly as the client encoded them
    (an absolute-form target is reduced to its path, so it can choose neither
    the upstream nor a cache key), and ``target`` the two as they go to the
    upstream (with the "?" of an empty query); ``path`` is ``raw_path`` percent-decoded,
    for matching routes. A client that sent ``Expect: 100-continue`` is told to
    go on the first time ``content`` is read, so a body nobody reads (a 413,
    a 429) is never sent.
    """

    __slots__ = (
        "_headers",
        "_path",
        "connection",
        "content",
        "content_length",
        "head",
        "keep_alive",
        "method",
        "query_string",
        "raw_path",
        "remote",
        "scheme",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        connection: HttpConnection,
        method: str,
        raw_path: str,
        query_string: str,
        target: str,
        head: RequestHead,
        version: str,
        keep_alive: bool,
        upgrade: bool,
        content: BodyBuffer | None,
    ) -> None:
        self.connection = connection
        self.method = method
        self.raw_path = raw_path
        self.query_string = query_string
        self.target = target
        self.head = head
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.content = content
        self.remote = connection.peer
        self.scheme = "http"
        self.content_length = head.content_length
        self._path: str | None = None
        self._headers: CIMultiDictProxy[str] | None = None

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The fields decoded, for whoever needs them by name; the proxy reads ``head``."""
        if self._headers is None:
            self._headers = decode_fields(self.head.fields)
        return self._headers

    @property
    def path(self) -> str:
        if self._path is None:
            raw = self.raw_path
            self._path = unquote(raw, errors="surrogateescape") if "%" in raw else raw
        return self._path

    @property
    def host(self) -> str:
        return self.head.host or ""

    def abort(self) -> None:
        """Cut the connection: the only way to say a streamed response is incomplete."""
        self.connection.abort()


class Response:
    """A whole response, written with one ``write`` and a computed ``Content-Length``.

    A ``Content-Length`` in ``headers`` is kept only when there is no body to
    measure (the answer to a HEAD, which announces the length it would have).
    ``relayed`` is the upstream's own fields, still encoded, for a response
    the proxy relays; ``own`` the fields the sidecar adds to every answer
    (``X-Request-ID``), encoded too, so that relaying a response decodes and
    encodes no header at all. ``headers`` is for anything else.
    """

    __slots__ = ("body", "headers_or_none", "own", "reason", "relayed", "status")
    prepared = False

    def __init__(
        self,
        status: int,
        headers: CIMultiDict[str] | None = None,
        body: bytes = b"",
        reason: str = "",
        relayed: ResponseHead | None = None,
        own: bytes = b"",
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers_or_none = headers  # made on first use: most relayed answers need none
        self.body = body
        self.relayed = relayed
        self.own = own

    @property
    def headers(self) -> CIMultiDict[str]:
        if self.headers_or_none is None:
            self.headers_or_none = CIMultiDict()
        return self.headers_or_none


class StreamResponse:
    """A response whose body is written as it arrives: ``prepare``, ``write``..., ``write_eof``.

    With ``content_length`` set the body goes as is; without it, chunked (or,
    to an HTTP/1.0 client, until the connection closes). ``relayed`` and
    ``own`` as for ``Response``.
    """

    def __init__(
        self,
        status: int,
        headers: CIMultiDict[str],
        reason: str = "",
        content_length: int | None = None,
        relayed: ResponseHead | None = None,
        own: bytes = b"",
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length = content_length
        self.relayed = relayed
        self.own = own
        self.prepared = False
        self._chunked = False
        self._connection: HttpConnection | None = None

    @property
    def headers_or_none(self) -> CIMultiDict[str]:
        return self.headers

    async def prepare(self, request: Request) -> None:
        connection = request.connection
        self._connection = connection
        self._chunked = connection.start_stream(request, self)
        self.prepared = True

    async def write(self, data: bytes) -> None:
        if not data:
            return
        assert self._connection is not None, "prepare() first"
        if self._chunked:
            self._connection.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self._connection.write(data)
        await self._connection.drain()

    async def write_eof(self) -> None:
        assert self._connection is not None, "prepare() first"
        if self._chunked:
            self._connection.write(b"0\r\n\r\n")
        await self._connection.drain()
        self._connection.end_stream()
