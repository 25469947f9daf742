"""What can be backed up: one module per kind, behind the ``BackupSource`` Protocol.

A source is named by a URL: ``postgresql://…``, ``redis://…``, ``file:///path``.
Restores are all or nothing: PostgreSQL restores in one transaction, Redis in
one MULTI/EXEC, a path into a staging directory that is then swapped in.

A restore drill (drill.py) also asks a source whether it accepts connections
(``probe``), which server version it runs (``server_version``, recorded in each
backup's manifest) and what it holds (``inventory``), to tell a restore that
worked from one that restored nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol
from urllib.parse import urlsplit

from ..errors import UsageError

__all__ = ["BackupSource", "open_source", "redact"]


class BackupSource(Protocol):
    kind: str

    def dump(self) -> Iterator[bytes]:
        """The source's contents as a byte stream; raises SourceUnreachable."""

    def restore(self, staged: str, throwaway: bool = False) -> None:
        """Replace the target's contents with the plaintext file ``staged``, all or nothing.

        ``throwaway`` (a restore drill's own server): what only production has
        (PostgreSQL's roles, hence its GRANTs) is left out rather than failing."""

    def probe(self) -> str | None:
        """None when the source accepts connections now, else why not; one quick attempt."""

    def server_version(self) -> str | None:
        """The server's version (e.g. ``15.4``), None for a kind without a server;
        raises SourceUnreachable."""

    def inventory(self) -> dict[str, int]:
        """What the source holds, counted (tables and rows, keys, files and bytes);
        raises SourceUnreachable."""


# Query parameters that carry a credential in the URLs libraries accept
# (redis-py's ?password=, libpq's ?password= and ?sslpassword=, tokens).
SECRET_PARAMETERS = frozenset({"password", "sslpassword", "pass", "token", "secret", "key"})


def redact(url: str) -> str:
    """The URL without its credentials, for manifests and logs: the password of
    ``user:password@``, and every credential-bearing query parameter.

    >>> redact("redis://:hunter2@cache:6379/0?password=hunter2&db=1")
    'redis://:***@cache:6379/0?password=***&db=1'
    """
    parts = urlsplit(url)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    if parts.query:
        pairs = [pair.partition("=") for pair in parts.query.split("&")]
        query = "&".join(
            f"{name}{eq}{'***' if name.lower() in SECRET_PARAMETERS and eq else value}"
            for name, eq, value in pairs
        )
        parts = parts._replace(query=query)
    return parts.geturl()


def open_source(url: str) -> BackupSource:
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresSource

        return PostgresSource(url)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisSource

        return RedisSource(url)
    if scheme == "file":
        from .filesystem import PathSource

        return PathSource(url)
    raise UsageError(f"{redact(url)}: unknown source; use postgresql://, redis:// or file:///")
