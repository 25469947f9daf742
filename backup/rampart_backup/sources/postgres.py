"""PostgreSQL: ``pg_dump`` in custom format; restored by ``pg_restore`` in one transaction.

Credentials reach the tools through PG* environment variables, never their
command line, so they do not show in a process list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import RestoreFailed, SourceUnreachable, UsageError

__all__ = ["PostgresSource"]

READ_SIZE = 256 * 1024


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UsageError(f"{name} not found: install the PostgreSQL client tools")
    return found


class PostgresSource:
    kind = "postgresql"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.database = unquote(parts.path.lstrip("/")) or "postgres"
        self.env = {**os.environ, "PGDATABASE": self.database, "PGCONNECT_TIMEOUT": "10"}
        if parts.hostname:
            self.env["PGHOST"] = parts.hostname
        if parts.port:
            self.env["PGPORT"] = str(parts.port)
        if parts.username:
            self.env["PGUSER"] = unquote(parts.username)
        if parts.password:
            self.env["PGPASSWORD"] = unquote(parts.password)
        for key, values in parse_qs(parts.query).items():
            if key == "sslmode":
                self.env["PGSSLMODE"] = values[-1]

    def dump(self) -> Iterator[bytes]:
        proc = subprocess.Popen(  # noqa: S603 - fixed arguments, credentials in env
            [_tool("pg_dump"), "--format=custom", "--no-password"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            while block := proc.stdout.read(READ_SIZE):
                yield block
        finally:
            proc.stdout.close()
            stderr = proc.stderr.read().decode(errors="replace").strip()
            code = proc.wait()
        if code != 0:
            raise SourceUnreachable(f"pg_dump failed ({code}): {stderr}")

    def restore(self, staged: str) -> None:
        result = subprocess.run(  # noqa: S603
            [
                _tool("pg_restore"),
                "--single-transaction",
                "--exit-on-error",
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-password",
                "--dbname",
                self.database,
                staged,
            ],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if result.returncode != 0:
            message = result.stderr.strip()
            if "could not connect" in message or "connection to server" in message:
                raise SourceUnreachable(f"pg_restore could not connect: {message}")
            raise RestoreFailed(f"pg_restore failed; the transaction was rolled back: {message}")
