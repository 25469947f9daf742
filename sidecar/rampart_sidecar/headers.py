"""Which headers cross the proxy, and the request id that follows each request."""

from __future__ import annotations

import os
import re

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["HOP_BY_HOP", "end_to_end", "request_id"]

# RFC 9110 section 7.6.1, plus Trailer: trailers are not relayed, so neither is
# the field announcing them.
HOP_BY_HOP = frozenset(
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
# What a log line and an upstream can safely receive: no spaces, no control bytes.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


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


class _RandomIds:
    """128-bit random ids from the OS's random source, 256 per system call instead of one."""

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> str:
        if self._at >= len(self._pool):
            self._pool = os.urandom(16 * 256)
            self._at = 0
        start = self._at
        self._at = start + 16
        return self._pool[start : start + 16].hex()


_new_id = _RandomIds()


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is well-formed, else a new random one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return _new_id()
