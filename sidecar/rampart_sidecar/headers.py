"""Which headers cross the proxy, and the request id that follows each request."""

from __future__ import annotations

import os
import re
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "CHARSET",
    "ENCODING",
    "ERRORS",
    "HOP_BY_HOP",
    "FieldKinds",
    "Fields",
    "RequestHead",
    "ResponseHead",
    "decode_fields",
    "end_to_end",
    "forwardable_trailers",
    "has",
    "request_id",
]

# Header fields as llhttp hands them over: names in the sender's case, bytes both.
Fields = list[tuple[bytes, bytes]]
# How both sides decode header bytes, so a header the client sent goes out byte for byte.
CHARSET: Final = "utf-8"
ERRORS: Final = "surrogateescape"
# The same as one tuple, for ``.decode(*ENCODING)`` off the request path: compiled, a
# call spread from a tuple is a generic call, where ``.decode(CHARSET, ERRORS)`` is not.
ENCODING: Final = (CHARSET, ERRORS)

# RFC 9110 section 7.6.1, plus Trailer: trailers are not relayed, so neither is
# the field announcing them.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
    }
)
# The same, as the lower-cased bytes a received field's name is compared with.
_HOP_BY_HOP_BYTES: Final = frozenset(name.encode() for name in HOP_BY_HOP)
# A response's fields not relayed as they are: Content-Length, which the server
# computes from the body it sends, and those the sidecar sets on every answer.
_NOT_RELAYED: Final = _HOP_BY_HOP_BYTES | {b"content-length", b"x-request-id", b"x-rampart-cache"}
# Connection tokens that name no field.
_PLAIN_CONNECTION: Final = frozenset({b"keep-alive", b"close", b""})
# Request fields a Connection token cannot remove.
_PROTECTED: Final = frozenset({b"host"})
# A request's fields that change what a cache may answer with: its directives,
# ranges, and the conditionals it may answer with 304 or must leave to the upstream.
_CACHE_FIELDS: Final = frozenset(
    {
        b"cache-control",
        b"pragma",
        b"range",
        b"if-none-match",
        b"if-modified-since",
        b"if-match",
        b"if-unmodified-since",
        b"if-range",
    }
)
# A request's fields the proxy reads or replaces rather than forwards as they are.
_NOT_FORWARDED: Final = _HOP_BY_HOP_BYTES | {b"content-length", b"x-request-id", b"x-forwarded-for"}

# What each scan below does with a field, by its lower-cased name; a name in
# neither table goes on as it came (FORWARD). Small ints, so each field costs
# one dict lookup rather than a chain of set lookups and comparisons.
FORWARD: Final = 0
DROP: Final = 1  # hop-by-hop, or one the sidecar sets itself
CONTENT_LENGTH: Final = 2
TRANSFER_ENCODING: Final = 3
CONNECTION: Final = 4
REQUEST_ID: Final = 5
FORWARDED_FOR: Final = 6
HOST: Final = 7
CACHE_FIELD: Final = 8
EXPECT: Final = 9
FORWARDED_PROTO: Final = 10
AUTHORIZATION: Final = 11
CONTENT_TYPE: Final = 12
DATE: Final = 13
CACHE_CONTROL: Final = 14
SET_COOKIE: Final = 15
CDN_CACHE_CONTROL: Final = 16
PROXY_CONNECTION: Final = 17  # dropped; llhttp reads it as it reads Connection
UPGRADE: Final = 18  # dropped; with it llhttp may take the request for an upgrade

_REQUEST_KINDS: Final[dict[bytes, int]] = {
    **dict.fromkeys(_NOT_FORWARDED, DROP),
    **dict.fromkeys(_CACHE_FIELDS, CACHE_FIELD),
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"connection": CONNECTION,
    b"proxy-connection": PROXY_CONNECTION,
    b"upgrade": UPGRADE,
    b"x-request-id": REQUEST_ID,
    b"x-forwarded-for": FORWARDED_FOR,
    b"host": HOST,
    b"expect": EXPECT,
    b"x-forwarded-proto": FORWARDED_PROTO,
    b"authorization": AUTHORIZATION,
}
_RESPONSE_KINDS: Final[dict[bytes, int]] = {
    **dict.fromkeys(_NOT_RELAYED, DROP),
    b"content-length": CONTENT_LENGTH,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"connection": CONNECTION,
    b"content-type": CONTENT_TYPE,
    b"date": DATE,
    b"cache-control": CACHE_CONTROL,
    b"set-cookie": SET_COOKIE,
    b"cdn-cache-control": CDN_CACHE_CONTROL,
}
# Names as senders usually spell them, read without lower-casing them first
# (``bytes.lower`` was a third of a head's cost): the tables above, extended with
# these spellings, each mapped to what its lower-cased form maps to.
_USUAL_SPELLINGS: Final = (
    b"Accept",
    b"Accept-Encoding",
    b"Accept-Language",
    b"Accept-Ranges",
    b"Access-Control-Allow-Origin",
    b"Age",
    b"Authorization",
    b"Cache-Control",
    b"Connection",
    b"Content-Encoding",
    b"Content-Length",
    b"Content-Type",
    b"Cookie",
    b"Date",
    b"ETag",
    b"Etag",
    b"Expect",
    b"Expires",
    b"Host",
    b"If-Modified-Since",
    b"If-None-Match",
    b"Keep-Alive",
    b"Last-Modified",
    b"Location",
    b"Origin",
    b"Pragma",
    b"Proxy-Connection",
    b"Referer",
    b"Server",
    b"Set-Cookie",
    b"Transfer-Encoding",
    b"Upgrade",
    b"User-Agent",
    b"Vary",
    b"X-Forwarded-For",
    b"X-Forwarded-Proto",
    b"X-Request-ID",
    b"X-Request-Id",
)


def _with_spellings(kinds: dict[bytes, int]) -> dict[bytes, int]:
    spelled = {name: kinds.get(name.lower(), FORWARD) for name in _USUAL_SPELLINGS}
    return {**spelled, **kinds}


_REQUEST_SPELLED: Final = _with_spellings(_REQUEST_KINDS)
_RESPONSE_SPELLED: Final = _with_spellings(_RESPONSE_KINDS)


def request_kind(name: bytes) -> int:
    """What ``RequestHead`` does with a field named ``name``, in any case."""
    kind = _REQUEST_SPELLED.get(name)
    return kind if kind is not None else _REQUEST_KINDS.get(name.lower(), FORWARD)


def response_kind(name: bytes) -> int:
    """What ``ResponseHead`` does with a field named ``name``, in any case."""
    kind = _RESPONSE_SPELLED.get(name)
    return kind if kind is not None else _RESPONSE_KINDS.get(name.lower(), FORWARD)


def has(data: bytes, part: bytes) -> bool:
    """``part in data``, for less: ``bytes.__contains__`` first tries ``part`` as an
    int, and the TypeError it raises and swallows cost about 1,000 instructions each
    time (callgrind), more than the search. ``find`` parses its arguments the old way
    (a tuple, then a format string: 900 instructions); ``partition`` takes one
    argument directly, and when ``part`` is absent returns ``data`` itself, copying
    nothing (timeit: 115 against 183 ns)."""
    return len(data.partition(part)[1]) > 0


def valid_host(value: bytes) -> bool:
    """Whether a Host field's value is uri-host [ ":" port ] (RFC 9112 section 3.2)."""
    if value in _VALID_HOSTS:
        return True
    if _HOST.fullmatch(value) is None:
        return False
    if len(_VALID_HOSTS) < _VALID_HOSTS_KEPT:
        _VALID_HOSTS.add(value)
    return True


# What a log line and an upstream can safely receive: no spaces, no control bytes.
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# RFC 9112 section 3.2 (RFC 3986's uri-host [ ":" port ]): nothing else, so no path,
# userinfo or space can slip into the authority a cache key is made of.
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")
# Host values found valid, so that a keep-alive client's every request does not
# run the expression again; bounded, since the values are the clients'.
_VALID_HOSTS: Final[set[bytes]] = set()
_VALID_HOSTS_KEPT: Final = 256
# Fields a trailer section must not carry (RFC 9110 section 6.5.1): framing,
# routing, request modifiers, authentication and content metadata, plus ours.
_NOT_IN_TRAILERS: Final = (
    _NOT_FORWARDED
    | _CACHE_FIELDS
    | {
        b"host",
        b"authorization",
        b"proxy-authorization",
        b"cookie",
        b"set-cookie",
        b"expect",
        b"max-forwards",
        b"content-encoding",
        b"content-type",
        b"content-range",
        b"x-forwarded-proto",
    }
)


def end_to_end(
    headers: CIMultiDictProxy[str] | CIMultiDict[str], also_drop: frozenset[str] = frozenset()
) -> CIMultiDict[str]:
    """A copy without hop-by-hop fields, including those the Connection field names."""
    # Copy in C, then delete the few names that may be there: far cheaper per
    # request than filtering every field in Python.
    copy = headers.copy()
    if "Connection" in copy:
        for value in copy.getall("Connection"):
            for token in value.split(","):
                copy.popall(token.strip(), None)
    for name in HOP_BY_HOP:
        if name in copy:
            del copy[name]
    for name in also_drop:
        if name in copy:
            del copy[name]
    return copy


def decode_fields(fields: Fields) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(
        CIMultiDict([(name.decode(*ENCODING), value.decode(*ENCODING)) for name, value in fields])
    )


def forwardable_trailers(fields: Fields) -> bytes:
    """The trailer fields that may go on, encoded: none that frames, routes or authenticates."""
    return b"".join(
        b"%s: %s\r\n" % (name, value)
        for name, value in fields
        if name.lower() not in _NOT_IN_TRAILERS
    )


def _connection_named(
    fields: Fields,
    tokens: list[bytes],
    dropped: frozenset[bytes],
    protected: frozenset[bytes] = frozenset(),
) -> bytes:
    """The fields encoded without ``dropped`` ones and those a Connection field names.

    ``protected`` fields stay whatever Connection says: a request without Host
    is one no HTTP/1.1 server should accept.
    """
    named = {token.strip().lower() for token in tokens} - protected
    return b"".join(
        b"%s: %s\r\n" % (name, value)
        for name, value in fields
        if name.lower() not in dropped and name.lower() not in named
    )


# How many of a head's first fields a connection remembers the kinds of.
_KINDS_REMEMBERED: Final = 32


class FieldKinds:
    """The kinds of the last head's fields on one connection, by position.

    A connection's peer sends the same names in the same order head after head
    (an application its responses, a client its requests): a name equal to the one
    at its position last time has that one's kind, found by one comparison (length
    and first byte, then the bytes) instead of hashing the new name for a dict
    lookup. Kinds are a function of the name alone, so a remembered one is never
    wrong, only sometimes not there.
    """

    __slots__ = ("kinds", "names")

    def __init__(self) -> None:
        self.names: list[bytes] = []
        self.kinds: list[int] = []

    def request_kind(self, at: int, name: bytes) -> int:
        """``request_kind(name)`` for the field at position ``at`` of a request head."""
        names = self.names
        if at < len(names) and names[at] == name:
            return self.kinds[at]
        kind = request_kind(name)
        self._remember(at, name, kind)
        return kind

    def response_kind(self, at: int, name: bytes) -> int:
        """``response_kind(name)`` for the field at position ``at`` of a response head."""
        names = self.names
        if at < len(names) and names[at] == name:
            return self.kinds[at]
        kind = response_kind(name)
        self._remember(at, name, kind)
        return kind

    def _remember(self, at: int, name: bytes, kind: int) -> None:
        names = self.names
        if at < len(names):
            names[at] = name
            self.kinds[at] = kind
        elif at == len(names) and at < _KINDS_REMEMBERED:
            names.append(name)
            self.kinds.append(kind)


class RequestHead:
    """What the proxy needs from a request's header fields, found in one pass over them.

    ``forwarded`` is the fields that go on to the upstream, encoded: without
    hop-by-hop fields, those the Connection field names, Content-Length (the
    upstream pool frames the body it sends), X-Request-ID and X-Forwarded-For
    (the proxy sets both).
    """

    __slots__ = (
        "authorization",
        "cache_fields",
        "chunked",
        "connection_fields",
        "content_length",
        "expects_continue",
        "fields",
        "forwarded",
        "forwarded_for",
        "has_forwarded_proto",
        "host",
        "host_fields",
        "host_valid",
        "request_id",
        "transfer_coding",
        "upgrade_field",
    )

    def __init__(  # noqa: C901 - one pass over the fields on the request path (compiled): no calls per field
        self, fields: Fields, kinds: FieldKinds | None = None
    ) -> None:
        """``kinds``: the connection's memory of its last head's field kinds, if kept."""
        self.fields = fields
        self.content_length: int | None = None
        self.chunked = False
        self.expects_continue = False
        self.request_id: str | None = None
        self.forwarded_for = b""  # every X-Forwarded-For value, joined
        self.has_forwarded_proto = False
        self.host: str | None = None  # the first Host field
        self.host_fields = 0
        self.host_valid = True  # the first Host is host[:port] (checked on its bytes)
        self.transfer_coding = b""  # every Transfer-Encoding value, joined, lower-cased
        self.authorization = False  # a shared cache stores its answer only if told it may
        self.cache_fields = False  # whether any field a cache must read is there
        # Whether llhttp's keep-alive and upgrade answers can differ from the defaults
        # (the server asks the parser only then: each call costs 1,000 instructions).
        # A Connection field other than "keep-alive", or a Proxy-Connection field.
        self.connection_fields = False
        self.upgrade_field = False
        forwarded: list[bytes] = []
        named: list[bytes] = []
        for at, (name, value) in enumerate(fields):
            kind = request_kind(name) if kinds is None else kinds.request_kind(at, name)
            if kind == HOST:
                self.host_fields += 1
                if self.host is None:
                    self.host = value.decode(CHARSET, ERRORS)
                    self.host_valid = valid_host(value)
            elif kind == CACHE_FIELD:
                self.cache_fields = True
            elif kind == EXPECT:
                self.expects_continue = value.lower() == b"100-continue"
            elif kind == FORWARDED_PROTO:
                self.has_forwarded_proto = True
            elif kind == AUTHORIZATION:
                self.authorization = True
            elif kind != FORWARD:  # read, then not forwarded as it came
                if kind == CONTENT_LENGTH:
                    self.content_length = int(value) if value.isdigit() else None
                elif kind == TRANSFER_ENCODING:
                    self.chunked = True
                    coding = value.strip().lower()
                    self.transfer_coding += b", " + coding if self.transfer_coding else coding
                elif kind == CONNECTION:
                    if value != b"keep-alive":  # the usual value: changes nothing in 1.1
                        self.connection_fields = True
                        if value.lower() not in _PLAIN_CONNECTION:
                            named += value.split(b",")
                elif kind == PROXY_CONNECTION:
                    self.connection_fields = True
                elif kind == UPGRADE:
                    self.upgrade_field = True
                elif kind == REQUEST_ID:
                    if self.request_id is None:
                        self.request_id = value.decode(CHARSET, ERRORS)
                elif kind == FORWARDED_FOR:
                    self.forwarded_for += b", " + value if self.forwarded_for else value
                continue
            forwarded.append(name)
            forwarded.append(b": ")
            forwarded.append(value)
            forwarded.append(b"\r\n")
        if named and not {token.strip().lower() for token in named} <= _PLAIN_CONNECTION:
            self.forwarded = _connection_named(fields, named, _NOT_FORWARDED, _PROTECTED)
        else:
            self.forwarded = b"".join(forwarded)

    def refusal(self, version: str) -> tuple[str, int, str] | None:
        """Why the proxy cannot forward this head faithfully: (detail, status, reason), if so.

        RFC 9112: section 3.2 (exactly one valid Host in HTTP/1.1), section 6.1
        (chunked is the only transfer coding the proxy can re-frame; none in HTTP/1.0).
        """
        if version != "1.1" and version != "1.0":
            return f"HTTP/{version}", 505, "http-version-not-supported"
        if self.host_fields > 1:
            return "more than one Host field", 400, "bad-request"
        if self.host is None:
            if version == "1.1":
                return "no Host field", 400, "bad-request"
        elif not self.host_valid:
            return "a Host that is not host[:port]", 400, "bad-request"
        if self.chunked:
            if version == "1.0":
                return "Transfer-Encoding in HTTP/1.0", 400, "bad-request"
            if self.transfer_coding != b"chunked":
                return "a transfer coding other than chunked", 501, "unsupported-transfer-coding"
        return None


class ResponseHead:
    """What the proxy needs from a response's header fields, found in one pass over them.

    ``relayed`` is the fields that go on to the client, already encoded
    ("Name: value\r\n" each): without hop-by-hop fields, those the Connection
    field names, Content-Length, and the fields the sidecar sets itself.
    Keeping them as bytes is what makes the relay cheap: decoding them into a
    ``CIMultiDict`` and back cost four times as much (docs/benchmarks.md).
    """

    __slots__ = (
        "cache_control",
        "cdn_cache_control",
        "chunked",
        "content_length",
        "content_type",
        "has_date",
        "relayed",
        "set_cookie",
        "transfer_coding",
    )

    def __init__(self, fields: Fields, kinds: FieldKinds | None = None) -> None:
        """``kinds``: the connection's memory of its last head's field kinds, if kept."""
        self.content_length: int | None = None
        self.content_type = b""
        self.chunked = False
        self.has_date = False
        self.transfer_coding = b""  # every Transfer-Encoding value, joined, lower-cased
        self.cache_control = b""  # every Cache-Control value, joined, lower-cased
        self.cdn_cache_control = False
        self.set_cookie = False
        relayed: list[bytes] = []
        named: list[bytes] = []  # tokens of Connection fields
        for at, (name, value) in enumerate(fields):
            kind = response_kind(name) if kinds is None else kinds.response_kind(at, name)
            if kind == DATE:
                self.has_date = True
            elif kind == CONTENT_TYPE:
                self.content_type = value
            elif kind == CACHE_CONTROL:
                control = value.lower()
                self.cache_control += b", " + control if self.cache_control else control
            elif kind == SET_COOKIE:
                self.set_cookie = True
            elif kind == CDN_CACHE_CONTROL:
                self.cdn_cache_control = True
            elif kind != FORWARD:  # read, then not relayed as it came
                if kind == CONTENT_LENGTH:
                    self.content_length = int(value) if value.isdigit() else None
                elif kind == TRANSFER_ENCODING:
                    coding = value.strip().lower()
                    self.transfer_coding += b", " + coding if self.transfer_coding else coding
                    self.chunked = has(self.transfer_coding, b"chunked")
                elif (
                    kind == CONNECTION
                    # nginx's, on every answer: compared before lower-casing a copy
                    and value != b"keep-alive"
                    and value.lower() not in _PLAIN_CONNECTION
                ):
                    named += value.split(b",")
                continue
            relayed.append(name)
            relayed.append(b": ")
            relayed.append(value)
            relayed.append(b"\r\n")
        if named and not {token.strip().lower() for token in named} <= _PLAIN_CONNECTION:
            self.relayed = _connection_named(fields, named, _NOT_RELAYED)
        else:
            self.relayed = b"".join(relayed)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResponseHead):
            return NotImplemented
        # The rest is read from the same fields as ``relayed``.
        return (self.relayed, self.content_length, self.chunked) == (
            other.relayed,
            other.content_length,
            other.chunked,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the fields it reads

    @property
    def relayable_framing(self) -> bool:
        """Whether the body can be relayed as it is: Transfer-Encoding is hop-by-hop, so a
        coding other than chunked (gzip, chunked) would reach the client undeclared."""
        return not self.transfer_coding or self.transfer_coding == b"chunked"

    @property
    def is_event_stream(self) -> bool:
        content_type = self.content_type
        # Most responses are not: decided without parsing the field.
        return has(content_type.lower(), b"event-stream") and self.media_type == "text/event-stream"

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-cased."""
        if not self.content_type:
            return "application/octet-stream"
        return self.content_type.split(b";", 1)[0].strip().lower().decode("latin-1")


class _RandomIds:
    """128-bit random ids from the OS's random source, 256 per system call instead of one.

    Hex-encoded 256 at a time too: each id is then one slice of a string.
    """

    def __init__(self) -> None:
        self._pool = ""
        self._at = 0

    def __call__(self) -> str:
        if self._at >= len(self._pool):
            self._pool = os.urandom(16 * 256).hex()
            self._at = 0
        start = self._at
        self._at = start + 32
        return self._pool[start : start + 32]


_new_id: Final = _RandomIds()


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is well-formed, else a new random one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return _new_id()
