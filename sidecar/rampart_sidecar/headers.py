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
    drop = HOP_BY_HOP | also_drop
    if "Connection" in headers:
        named = {
            token.strip().lower()
            for value in headers.getall("Connection")
            for token in value.split(",")
        }
        drop = drop | named
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


def request_id(incoming: str | None) -> str:
    """The caller's ``X-Request-ID`` when it is well-formed, else a new random one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()
