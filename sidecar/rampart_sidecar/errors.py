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
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectFailure",
    "PerTryTimeout",
    "RampartError",
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
