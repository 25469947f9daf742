"""Every exception the sidecar raises on purpose.

    RampartError
    ├── ConfigError          the settings file or a flag is invalid (exit status 2)
    └── UpstreamError        one attempt to reach the upstream failed
        ├── ConnectFailure   no connection could be made (nothing was sent)
        ├── UpstreamReset    the connection broke after the request was sent
        └── PerTryTimeout    the attempt ran past ``retries.perTryTimeout``

Lower-level errors (the upstream pool's ``ConnectionError``s, aiohttp's for
WebSockets, the OS's) are translated into these in one place,
``proxy.classify_client_error``, keeping the original as ``__cause__``.

The request path's own low-level exceptions live here too, below, rather
than beside the code that raises them: those modules are compiled by mypyc
(``setup.py``), and a compiled class cannot subclass a built-in exception.
"""

from __future__ import annotations

__all__ = [
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
]


class RampartError(Exception):
    """Base of every error the sidecar raises on purpose."""


class ConfigError(RampartError):
    """Invalid settings; ``problems`` holds one ``field.path: reason`` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


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


class PerTryTimeout(UpstreamError):
    retry_on = "timeout"
    reason = "upstream-timeout"
    status = 504


class UpstreamConnectError(ConnectionError):
    """No connection to the application could be made; nothing was sent."""


class UpstreamClosed(ConnectionError):
    """The connection to the application broke before the response ended."""


class HeadTooLarge(Exception):
    """A request head passed ``server.maxHeaderBytes`` (the server answers 400)."""


class BodyTooLarge(Exception):
    """The client's body passed ``server.maxRequestBodyBytes``."""
