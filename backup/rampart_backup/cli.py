"""``rampart-backup``: back up, list, verify, restore, drill and prune.

    rampart-backup run --source URL --dest DIR --key-file FILE [--keep-last N ...]
    rampart-backup list --dest DIR [--key-file FILE]
    rampart-backup verify --dest DIR [--backup ID] --key-file FILE [--allow-format-1]
    rampart-backup restore --from BACKUP --target URL --key-file FILE [--allow-format-1]
    rampart-backup drill --dest DIR --key-file FILE --target URL [--name NAME]
        [--pushgateway URL] [--metrics-file FILE] [--label KEY=VALUE]...
        [--rto-seconds N] [--rpo-seconds N] [--check-sql SQL]...
        [--check-command CMD]... [--wait-seconds N]
    rampart-backup prune --dest DIR --key-file FILE --keep-... N

Source and target URLs may come from RAMPART_BACKUP_SOURCE and
RAMPART_BACKUP_TARGET instead, so credentials never show in a process list.
``drill`` restores the newest backup into a throwaway target and checks it
(drill.py); it never reads RAMPART_BACKUP_SOURCE. Each kind of failure has its
own exit status (see errors.py).

Retention (``run``, ``prune``) and ``drill`` trust only backups whose manifest
authenticates with the key (store.py); the others are kept, and named in a
warning on stderr (``drill``: in its report). A format-1 backup, from before
backups were authenticated, is verified or restored only with
``--allow-format-1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .crypto import load_key
from .drill import DrillOptions, run_drill
from .errors import BackupError, UsageError
from .metrics import check_labels, record
from .retention import Policy
from .sources import open_source, redact
from .store import Untrusted, authenticated, find, list_backups, prune, restore, run_backup, verify

__all__ = ["main"]


def _policy(parser: argparse.ArgumentParser) -> None:
    for rule in ("last", "daily", "weekly", "monthly"):
        parser.add_argument(f"--keep-{rule}", type=int, default=0, metavar="N")


def _labelled(parser: argparse.ArgumentParser, name_help: str) -> None:
    """The options that say where a command's metrics go and how they are labelled."""
    parser.add_argument("--name", default="backup", help=name_help)
    parser.add_argument("--metrics-file", type=Path)
    parser.add_argument("--pushgateway")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra label on the metrics (repeatable)",
    )


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text}: expected a number of seconds, 0 or more")
    return value


def _drill_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drill = commands.add_parser(
        "drill", help="restore the newest backup in DEST into a throwaway target, and check it"
    )
    drill.add_argument("--dest", type=Path, required=True)
    drill.add_argument("--key-file", type=Path, required=True)
    drill.add_argument("--target", help="a throwaway server, never production's")
    _labelled(drill, "the backup's name in the metrics, as its runs give it")
    drill.add_argument("--rto-seconds", type=_seconds, metavar="N", help="published, not enforced")
    drill.add_argument("--rpo-seconds", type=_seconds, metavar="N", help="published, not enforced")
    drill.add_argument(
        "--check-sql",
        action="append",
        default=[],
        metavar="SQL",
        help="must succeed and not answer false (PostgreSQL; repeatable)",
    )
    drill.add_argument(
        "--check-command",
        action="append",
        default=[],
        metavar="CMD",
        help="run by sh with RAMPART_DRILL_TARGET set; must exit 0 (repeatable)",
    )
    drill.add_argument(
        "--wait-seconds",
        type=_seconds,
        default=120.0,
        metavar="N",
        help="how long to wait for the target to accept connections (default 120)",
    )


def _allow_format_1(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-format-1",
        action="store_true",
        help="accept a format-1 backup, whose name and times are not authenticated",
    )


def _warn(text: str) -> None:
    print(f"rampart-backup: warning: {' '.join(text.split())}", file=sys.stderr)


def _warn_untrusted(untrusted: list[Untrusted]) -> None:
    for item in untrusted:
        _warn(f"{item.backup.name}: kept, and not counted by retention: {item.reason}")


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
    _labelled(run, "job name in the metrics")
    _policy(run)
    listing = commands.add_parser("list", help="the backups in DEST, oldest first (JSON lines)")
    listing.add_argument("--dest", type=Path, required=True)
    listing.add_argument(
        "--key-file", type=Path, help="also say whether each manifest authenticates"
    )
    check = commands.add_parser("verify", help="authenticate every chunk, restore nothing")
    check.add_argument("--dest", type=Path, required=True)
    check.add_argument("--backup", help="one backup (default: all)")
    check.add_argument("--key-file", type=Path, required=True)
    _allow_format_1(check)
    back = commands.add_parser("restore", help="replace the target's data with a backup")
    back.add_argument("--from", dest="source_backup", required=True, help="a backup folder")
    back.add_argument("--target")
    back.add_argument("--key-file", type=Path, required=True)
    _allow_format_1(back)
    _drill_parser(commands)
    trim = commands.add_parser("prune", help="apply a retention policy")
    trim.add_argument("--dest", type=Path, required=True)
    trim.add_argument("--key-file", type=Path, required=True)
    _policy(trim)
    args = parser.parse_args(argv)
    try:
        _dispatch(args)
    except BackupError as error:
        # One line, whatever the tool behind it printed (pg_dump says it in two).
        reason = " ".join(str(error).split())
        print(f"rampart-backup: {type(error).__name__}: {reason}", file=sys.stderr)
        sys.exit(error.exit_code)
    except OSError as error:
        # The destination or a staging folder: not writable, not there, full.
        where = error.filename or "the destination"
        print(f"rampart-backup: UsageError: {where}: {error.strerror}", file=sys.stderr)
        sys.exit(UsageError.exit_code)


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
            backup, pruned = run_backup(source, args.dest, key, policy)
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
        _warn_untrusted(pruned.untrusted)
        print(json.dumps({"backup": backup.name, **backup.manifest}))
    elif args.command == "list":
        _list(args.dest, args.key_file)
    elif args.command == "verify":
        _verify(args.dest, args.backup, load_key(args.key_file), args.allow_format_1)
    elif args.command == "restore":
        target = _url(args.target, "RAMPART_BACKUP_TARGET", "target")
        key = load_key(args.key_file)
        backup = find(args.source_backup)
        if args.allow_format_1 and backup.manifest.get("format") == 1:
            _warn(f"{backup.name} is a format-1 backup: nothing proves which backup it is")
        restore(backup, target, key, allow_format_1=args.allow_format_1)
        source = backup.manifest["source"]
        print(
            f"restored {args.source_backup} ({source['kind']} from {source.get('url')}, "
            f"started {backup.manifest['started']}) into {redact(target)}"
        )
    elif args.command == "drill":
        print(json.dumps(run_drill(_drill_options(args))))
    elif args.command == "prune":
        key = load_key(args.key_file)
        policy = Policy(args.keep_last, args.keep_daily, args.keep_weekly, args.keep_monthly)
        pruned = prune(args.dest, policy, key)
        _warn_untrusted(pruned.untrusted)
        for backup in pruned.deleted:
            print(f"deleted {backup.name}")


def _list(dest: Path, key_file: Path | None) -> None:
    if key_file is None:
        for backup in list_backups(dest):
            print(json.dumps({"backup": backup.name, **backup.manifest}))
        return
    trusted, untrusted = authenticated(dest, load_key(key_file))
    lines = [(b, {"authenticated": True}) for b in trusted] + [
        (u.backup, {"authenticated": False, "problem": u.reason}) for u in untrusted
    ]
    for backup, status in sorted(lines, key=lambda line: line[0].name):
        print(json.dumps({"backup": backup.name, **backup.manifest, **status}))


def _verify(dest: Path, one: str | None, key: bytes, allow_format_1: bool) -> None:
    """One backup, or all in DEST; a format-1 backup of all is skipped unless allowed."""
    for backup in [find(one, dest)] if one else list_backups(dest, strict=True):
        legacy = backup.manifest.get("format") == 1
        if legacy and not allow_format_1 and not one:
            print(f"{backup.name}: skipped: format 1, not authenticated (--allow-format-1)")
            continue
        size = verify(backup, key, allow_format_1)
        print(f"{backup.name}: ok, {size} bytes" + (" (format 1)" if legacy else ""))


def _drill_options(args: argparse.Namespace) -> DrillOptions:
    return DrillOptions(
        dest=args.dest,
        key_file=args.key_file,
        # The target only: the production source is never the drill's business.
        target=_url(args.target, "RAMPART_BACKUP_TARGET", "target"),
        name=args.name,
        labels=_labels(args.label),
        metrics_file=args.metrics_file,
        pushgateway=args.pushgateway,
        rto_seconds=args.rto_seconds,
        rpo_seconds=args.rpo_seconds,
        check_sql=tuple(args.check_sql),
        check_commands=tuple(args.check_command),
        wait_seconds=args.wait_seconds,
    )
