"""What can be backed up: one module per kind, behind the ``BackupSource`` Protocol.

A source is named by a URL: ``postgresql://…``, ``redis://…``, ``file:///path``.
Restores are all or nothing: PostgreSQL restores in one transaction, Redis in
one MULTI/EXEC, a path into a staging directory that is then swapped in.
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

    def restore(self, staged: str) -> None:
        """Replace the target's contents with the plaintext file ``staged``, all or nothing."""


def redact(url: str) -> str:
    """The URL without its password, for manifests and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


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
