"""Every exception the sidecar raises on purpose.

    ConfigError              the settings file or a flag is invalid (exit status 2;
                             rampart_common's: the operator raises it too)
    RampartError
    └── UpstreamError        one attempt to reach the upstream failed
        ├── ConnectFailure   no connection could be made (nothing was sent)
        ├── UpstreamReset    the connection broke after the request was sent
        ├── BadResponse      the application's answer cannot be relayed faithfully
        └── PerTryTimeout    the attempt ran past ``retries.perTryTimeout``

Lower-level errors (the upstream pool's ``ConnectionError``s, aiohttp's for
WebSockets, the OS's) are translated into these in one place,
``proxy.classify_client_error``, keeping the original as ``__cause__``.

The request path's own low-level exceptions live here too, below, rather
than beside the code that raises them: those modules are compiled by mypyc
(``setup.py``), and a compiled class cannot subclass a built-in exception.
"""

from __future__ import annotations

from rampart_common.errors import ConfigError

__all__ = [
    "BadMessage",
    "BadResponse",
    "BodyTooLarge",
    "ConfigError",
    "ConnectFailure",
    "HeadTooLarge",
    "PerTryTimeout",
    "RampartError",
    "UpstreamClosed",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamReset",
    "UpstreamUnreadable",
]


class RampartError(Exception):
    """Base of every error the sidecar raises on purpose."""


class UpstreamError(RampartError):
    """One attempt to reach the upstream failed; ``retry_on`` names the retry condition."""

    retry_on = ""
    reason = "upstream-error"
    status = 502


class ConnectFailure(UpstreamError):
    retry_on = "connect-failure"
    reason = "upstream-connect-failure"


class UpstreamReset(UpstreamError):
    retry_on = "reset"
    reason = "upstream-reset"


class BadResponse(UpstreamError):
    retry_on = "reset"
    reason = "upstream-bad-response"


class PerTryTimeout(UpstreamError):
    retry_on = "timeout"
    reason = "upstream-timeout"
    status = 504


class UpstreamConnectError(ConnectionError):
    """No connection to the application could be made; nothing was sent."""


class UpstreamClosed(ConnectionError):
    """The connection to the application broke before the response ended."""


class UpstreamUnreadable(UpstreamClosed):
    """The application's response broke HTTP/1.1 (or our limits), so the connection was closed."""


class BadMessage(Exception):
    """A client's request the server refuses: ``status`` and ``reason`` are the answer.

    Raised while parsing the head (before anything is forwarded), or handed to
    the request's body when its framing breaks half-way, so the proxy reading
    it answers at once instead of waiting for bytes that will never come.
    """

    def __init__(self, detail: str, status: int = 400, reason: str = "bad-request") -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason


class HeadTooLarge(BadMessage):
    """A request head (or trailer section) past ``server.maxHeaderBytes`` or ``maxHeaderFields``."""

    def __init__(self, detail: str, status: int = 431, reason: str = "header-too-large") -> None:
        super().__init__(detail, status, reason)


class BodyTooLarge(Exception):
    """The client's body passed ``server.maxRequestBodyBytes``."""
