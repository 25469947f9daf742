"""``rampart-backup``: back up, list, verify, restore and prune.

    rampart-backup run --source URL --dest DIR --key-file FILE [--keep-last N ...]
    rampart-backup list --dest DIR
    rampart-backup verify --dest DIR [--backup ID] --key-file FILE
    rampart-backup restore --from BACKUP --target URL --key-file FILE
    rampart-backup prune --dest DIR --keep-... N

Source and target URLs may come from RAMPART_BACKUP_SOURCE and
RAMPART_BACKUP_TARGET instead, so credentials never show in a process list.
Each kind of failure has its own exit status (see errors.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .crypto import load_key
from .errors import BackupError, UsageError
from .metrics import check_labels, record
from .retention import Policy
from .sources import open_source, redact
from .store import find, list_backups, prune, restore, run_backup, verify

__all__ = ["main"]


def _policy(parser: argparse.ArgumentParser) -> None:
    for rule in ("last", "daily", "weekly", "monthly"):
        parser.add_argument(f"--keep-{rule}", type=int, default=0, metavar="N")


def _url(value: str | None, env: str, what: str) -> str:
    url = value or os.environ.get(env)
    if not url:
        raise UsageError(f"give --{what} or set {env}")
    return url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="rampart-backup", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="back up a source into DEST, then prune")
    run.add_argument("--source")
    run.add_argument("--dest", type=Path, required=True)
    run.add_argument("--key-file", type=Path, required=True)
    run.add_argument("--name", default="backup", help="job name in the metrics")
    run.add_argument("--metrics-file", type=Path)
    run.add_argument("--pushgateway")
    run.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra label on the run's metrics (repeatable)",
    )
    _policy(run)
    listing = commands.add_parser("list", help="the backups in DEST, oldest first (JSON lines)")
    listing.add_argument("--dest", type=Path, required=True)
    check = commands.add_parser("verify", help="authenticate every chunk, restore nothing")
    check.add_argument("--dest", type=Path, required=True)
    check.add_argument("--backup", help="one backup (default: all)")
    check.add_argument("--key-file", type=Path, required=True)
    back = commands.add_parser("restore", help="replace the target's data with a backup")
    back.add_argument("--from", dest="source_backup", required=True, help="a backup folder")
    back.add_argument("--target")
    back.add_argument("--key-file", type=Path, required=True)
    trim = commands.add_parser("prune", help="apply a retention policy")
    trim.add_argument("--dest", type=Path, required=True)
    _policy(trim)
    args = parser.parse_args(argv)
    try:
        _dispatch(args)
    except BackupError as error:
        print(f"rampart-backup: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(error.exit_code)


def _labels(items: list[str]) -> dict[str, str]:
    labels = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"--label {item}: expected KEY=VALUE")
        labels[name] = value
    problem = check_labels(labels)
    if problem:
        raise UsageError(problem)
    return labels


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "run":
        labels = _labels(args.label)
        source = _url(args.source, "RAMPART_BACKUP_SOURCE", "source")
        key = load_key(args.key_file)
        policy = Policy(args.keep_last, args.keep_daily, args.keep_weekly, args.keep_monthly)
        started = time.monotonic()
        try:
            backup = run_backup(source, args.dest, key, policy)
        except BackupError:
            record(
                args.name,
                open_source(source).kind,
                False,
                time.monotonic() - started,
                0,
                args.metrics_file,
                args.pushgateway,
                labels,
            )
            raise
        record(
            args.name,
            backup.manifest["source"]["kind"],
            True,
            backup.manifest["durationSeconds"],
            backup.manifest["size"],
            args.metrics_file,
            args.pushgateway,
            labels,
        )
        print(json.dumps({"backup": backup.path.name, **backup.manifest}))
    elif args.command == "list":
        for backup in list_backups(args.dest):
            print(json.dumps({"backup": backup.path.name, **backup.manifest}))
    elif args.command == "verify":
        key = load_key(args.key_file)
        backups = [find(args.backup, args.dest)] if args.backup else list_backups(args.dest)
        for backup in backups:
            size = verify(backup, key)
            print(f"{backup.path.name}: ok, {size} bytes")
    elif args.command == "restore":
        target = _url(args.target, "RAMPART_BACKUP_TARGET", "target")
        restore(find(args.source_backup), target, load_key(args.key_file))
        print(f"restored {args.source_backup} into {redact(target)}")
    elif args.command == "prune":
        policy = Policy(args.keep_last, args.keep_daily, args.keep_weekly, args.keep_monthly)
        for backup in prune(args.dest, policy):
            print(f"deleted {backup.path.name}")
