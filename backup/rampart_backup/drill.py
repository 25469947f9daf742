"""``rampart-backup drill``: prove that the newest backup restores, and measure it.

A drill runs in a Job next to a throwaway server, never the production one: it
reads only its target (``--target`` or RAMPART_BACKUP_TARGET), never
RAMPART_BACKUP_SOURCE. In order, it

1. picks the newest complete backup in DEST whose manifest authenticates with
   the key and names its folder (NoBackup when there is none): a forged or
   renamed backup, one made with another key or a format-1 one is never
   drilled, and the report names it under ``untrusted``;
2. checks that the target is of the backup's kind (UsageError);
3. waits for the target to accept connections: its server container may still
   be starting (SourceUnreachable after ``--wait-seconds``);
4. refuses a server of another major version than the one backed up
   (DrillFailed): that restore would prove nothing about production's;
5. verifies and restores the backup, timed: the measured RTO (its data file
   must be its own: Misplaced otherwise);
6. counts what was restored; nothing at all fails the drill (DrillFailed);
7. runs the user's checks, ``--check-sql`` (PostgreSQL) and ``--check-command``;
8. takes the backup's age: the measured RPO;

and publishes its metrics (metrics.py) whether it succeeded or not, before the
error's exit status. An RTO or RPO target exceeded is reported, not a failure:
the alert rules judge those from the metrics.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .crypto import load_key
from .errors import BackupError, DrillFailed, NoBackup, SourceUnreachable, UsageError, WrongKey
from .metrics import record_drill
from .sources import BackupSource, open_source, redact
from .sources.postgres import PostgresSource
from .store import Backup, Untrusted, authenticated, check_kind, restore

__all__ = ["DrillOptions", "run_drill"]

TITLES = {"postgresql": "PostgreSQL", "redis": "Redis", "path": "path"}
# What a restore of each kind must not come back without: kind → (what, count).
NOT_EMPTY = {
    "postgresql": ("the restored PostgreSQL database", "tables"),
    "redis": ("the restored Redis database", "keys"),
    "path": ("the restored directory", "files"),
}
STDERR_LINES = 5  # of a failed check's stderr, in the one-line reason


@dataclass(frozen=True)
class DrillOptions:
    dest: Path
    key_file: Path
    target: str
    name: str = "backup"
    labels: dict[str, str] = field(default_factory=dict)
    metrics_file: Path | None = None
    pushgateway: str | None = None
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    check_sql: tuple[str, ...] = ()
    check_commands: tuple[str, ...] = ()
    wait_seconds: float = 120.0


@dataclass
class _Progress:
    """What the drill has established so far: a failed drill still publishes it."""

    kind: str
    backup: Backup | None = None
    restore_seconds: float | None = None
    restored_bytes: int | None = None
    _age: float | None = field(default=None, init=False, repr=False)

    def backup_age(self) -> float | None:
        """Seconds since the backup finished: what losing production now would lose.
        Taken once, so that the report and the metrics agree."""
        if self.backup is not None and self._age is None:
            manifest = self.backup.manifest
            finished = datetime.datetime.fromisoformat(
                manifest.get("finished", manifest["started"])
            )
            self._age = (datetime.datetime.now(datetime.UTC) - finished).total_seconds()
        return self._age


def run_drill(options: DrillOptions) -> dict[str, Any]:
    """Drill, publish the outcome, and return the report (or raise, having published)."""
    target = open_source(options.target)  # an unknown scheme: no kind to publish under
    progress = _Progress(kind=target.kind)
    try:
        report = _drill(options, target, progress)
    except Exception as error:
        if isinstance(error, BackupError):
            # A tool's or a check's words may repeat the target URL: never its password.
            error.args = (_scrub(str(error), options.target),)
        _publish(options, progress, success=False)  # an alert must see a drill fail
        raise
    _publish(options, progress, success=True)
    return report


def _drill(options: DrillOptions, target: BackupSource, progress: _Progress) -> dict[str, Any]:
    key = load_key(options.key_file)
    sql_target = _sql_target(target, options.check_sql)
    backup, untrusted = _newest(options.dest, key)
    progress.backup, progress.kind = backup, backup.manifest["source"]["kind"]
    check_kind(backup, target)
    _wait_for(target, options.target, options.wait_seconds)
    _check_version(backup, target)
    clock = time.monotonic()
    progress.restored_bytes = restore(backup, options.target, key, throwaway=True)  # verifies
    progress.restore_seconds = restore_seconds = time.monotonic() - clock
    inventory = target.inventory()
    _check_not_empty(target.kind, inventory)
    passed = _sql_checks(sql_target, options.check_sql) if sql_target else []
    passed += _command_checks(options.target, options.check_commands)
    age = progress.backup_age() or 0.0
    return {
        "backup": backup.name,
        "source": backup.manifest["source"].get("url"),  # authenticated, credentials removed
        "kind": target.kind,
        "restoreSeconds": round(restore_seconds, 3),
        "backupAgeSeconds": round(age, 3),
        "restoredBytes": progress.restored_bytes,
        "inventory": inventory,
        "checks": passed,
        "rtoExceeded": options.rto_seconds is not None and restore_seconds > options.rto_seconds,
        "rpoExceeded": options.rpo_seconds is not None and age > options.rpo_seconds,
        "untrusted": [{"backup": u.backup.name, "reason": u.reason} for u in untrusted],
    }


def _newest(dest: Path, key: bytes) -> tuple[Backup, list[Untrusted]]:
    # Complete backups only: a run renames its folder into place when done, so
    # a run still going (or one that died) is not drilled. Authenticated only:
    # a manifest that claims to be the newest proves it.
    backups, untrusted = authenticated(dest, key)
    if not backups:
        other_key = [u for u in untrusted if isinstance(u.error, WrongKey)]
        if other_key:  # the key in the cluster is not the backups': say so, not "none"
            raise WrongKey(
                f"the key does not match the one the backups in {dest} were made with "
                f"({len(other_key)} of {len(untrusted)})"
            )
        if untrusted:
            reasons = "; ".join(u.reason for u in untrusted[-3:])
            raise NoBackup(
                f"no authenticated backup in {dest} to drill: {len(untrusted)} "
                f"not authenticated ({reasons})"
            )
        raise NoBackup(f"no backup in {dest} to drill")
    return max(backups, key=lambda backup: backup.started), untrusted


def _sql_target(target: BackupSource, statements: tuple[str, ...]) -> PostgresSource | None:
    """The target SQL checks run on; refused before any work when it speaks no SQL."""
    if not statements:
        return None
    if not isinstance(target, PostgresSource):
        raise UsageError(f"--check-sql needs a PostgreSQL target, not {target.kind}")
    return target


def _wait_for(target: BackupSource, url: str, seconds: float) -> None:
    """Poll about once a second until the target answers, or give up."""
    deadline = time.monotonic() + seconds
    while (problem := target.probe()) is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SourceUnreachable(
                f"{redact(url)} did not accept connections within {seconds:g}s: "
                f"{_one_line(problem)}"
            )
        time.sleep(min(1.0, left))


def _major(kind: str, version: str) -> tuple[int, ...]:
    numbers = tuple(int(number) for number in re.findall(r"\d+", version)[:2])
    # PostgreSQL's majors had two numbers (9.6) before 10; since then one, as Redis'.
    if kind == "postgresql" and numbers and numbers[0] < 10:
        return numbers
    return numbers[:1]


def _check_version(backup: Backup, target: BackupSource) -> None:
    backed_up = backup.manifest["source"].get("serverVersion")
    if not backed_up:  # a manifest from before versions were recorded, or no server
        return
    running = target.server_version()
    if running is None or _major(target.kind, backed_up) == _major(target.kind, running):
        return
    raise DrillFailed(
        f"backup of {TITLES.get(target.kind, target.kind)} {backed_up} cannot be drilled "
        f"on {running}: use a drill image of the same major version"
    )


def _check_not_empty(kind: str, inventory: dict[str, int]) -> None:
    # A restore that "worked" into nothing proves nothing: the dump was empty.
    what, count = NOT_EMPTY[kind]
    if inventory.get(count, 0) == 0:
        raise DrillFailed(f"{what} is empty: no {count}")


def _sql_checks(target: PostgresSource, statements: tuple[str, ...]) -> list[str]:
    passed = []
    for sql in statements:
        name = f"sql: {sql}"
        problem = target.check(sql)
        if problem is not None:
            raise DrillFailed(f'check "{name}" failed: {_one_line(problem)}')
        passed.append(name)
    return passed


def _command_checks(url: str, commands: tuple[str, ...]) -> list[str]:
    # The command gets the drill's target, and not the production URL the
    # Job's environment might also hold.
    env = {name: value for name, value in os.environ.items() if name != "RAMPART_BACKUP_SOURCE"}
    env["RAMPART_DRILL_TARGET"] = url
    passed = []
    for command in commands:
        name = f"command: {command}"
        done = subprocess.run(  # noqa: S603 - the user's own check, for a shell by design
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise DrillFailed(
                f'check "{name}" exited with {done.returncode}: {_one_line(done.stderr)}'
            )
        passed.append(name)
    return passed


def _one_line(text: str) -> str:
    """The last lines of a tool's output, on one line: errors print one line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " / ".join(lines[-STDERR_LINES:]) or "(no output)"


def _scrub(text: str, url: str) -> str:
    password = urlsplit(url).password
    for secret in {password, unquote(password)} if password else set():
        text = text.replace(secret, "***")
    return text


def _publish(options: DrillOptions, progress: _Progress, success: bool) -> None:
    values = {"last_run_success": float(success)}
    if success:
        values["last_success_timestamp_seconds"] = time.time()
    if progress.restore_seconds is not None and progress.restored_bytes is not None:
        values["restore_duration_seconds"] = progress.restore_seconds
        values["restored_bytes"] = progress.restored_bytes
    age = progress.backup_age()
    if age is not None:
        values["backup_age_seconds"] = age
    if options.rto_seconds is not None:
        values["rto_target_seconds"] = options.rto_seconds
    if options.rpo_seconds is not None:
        values["rpo_target_seconds"] = options.rpo_seconds
    record_drill(
        options.name,
        progress.kind,
        values,
        options.metrics_file,
        options.pushgateway,
        options.labels,
    )
