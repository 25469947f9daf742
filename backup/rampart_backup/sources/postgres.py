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

from ..errors import BackupError, RestoreFailed, SourceUnreachable, UsageError

__all__ = ["PostgresSource"]

READ_SIZE = 256 * 1024
PSQL_CONNECTION_LOST = 2  # psql's exit status when it cannot connect (or loses the server)
# Base tables outside the catalogs, each counted exactly, in one statement (no
# function to create on the target). Only ordinary tables (relkind r, which
# includes partitions): a partitioned parent's count(*) would count its rows twice.
INVENTORY_SQL = """
SELECT count(*),
       coalesce(sum((xpath('/row/n/text()', query_to_xml(
           format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
           false, true, '')))[1]::text::bigint), 0)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""
FALSE_ANSWERS = frozenset({"f", "false", "0"})


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

    def restore(self, staged: str, throwaway: bool = False) -> None:
        # A drill's server has none of production's roles: GRANTs to them would fail.
        privileges = ["--no-privileges"] if throwaway else []
        result = subprocess.run(  # noqa: S603
            [
                _tool("pg_restore"),
                "--single-transaction",
                "--exit-on-error",
                "--clean",
                "--if-exists",
                "--no-owner",
                *privileges,
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

    def _psql(
        self, sql: str, connect_timeout: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = self.env
        if connect_timeout is not None:
            env = {**env, "PGCONNECT_TIMEOUT": str(connect_timeout)}
        return subprocess.run(  # noqa: S603 - fixed arguments, credentials in env
            # -X: no ~/.psqlrc to change the output; -At: bare values, one row a line
            [_tool("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "--no-password", "-c", sql],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    def _unreachable(self, result: subprocess.CompletedProcess[str]) -> None:
        if result.returncode == PSQL_CONNECTION_LOST:
            raise SourceUnreachable(f"psql could not connect: {result.stderr.strip()}")

    def query(self, sql: str) -> str:
        """``sql``'s answer as psql prints it unaligned: a row a line, fields split by |."""
        result = self._psql(sql)
        self._unreachable(result)
        if result.returncode != 0:
            raise BackupError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout.strip()

    def probe(self) -> str | None:
        # A trivial query, not pg_isready: a server that is up but still
        # refuses us (starting up, no such database, bad credentials) is not ready.
        result = self._psql("SELECT 1", connect_timeout=2)  # libpq's minimum
        return None if result.returncode == 0 else result.stderr.strip()

    def server_version(self) -> str | None:
        # "15.4 (Debian 15.4-1.pgdg120+1)": the number is what compatibility is about.
        return self.query("SHOW server_version").split()[0]

    def inventory(self) -> dict[str, int]:
        tables, _, rows = self.query(INVENTORY_SQL).partition("|")
        return {"tables": int(tables), "rows": int(rows)}

    def check(self, sql: str) -> str | None:
        """None when ``sql`` runs and does not answer false, else what went wrong.

        A single ``f``, ``false`` or ``0`` fails the check, so a check can be
        written as a question: ``SELECT count(*) > 0 FROM orders``.
        """
        result = self._psql(sql)
        self._unreachable(result)
        if result.returncode != 0:
            return result.stderr.strip() or f"psql exited with {result.returncode}"
        answer = result.stdout.strip()  # one value is one line with no | in it
        if answer.lower() in FALSE_ANSWERS:
            return f"it answered {answer}"
        return None
