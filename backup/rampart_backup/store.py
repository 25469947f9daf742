"""Backups in a directory (a mounted PVC): one folder each, with a manifest.

    DEST/20261123T020000Z-postgresql/data.rbk        the encrypted stream (crypto.py)
    DEST/20261123T020000Z-postgresql/manifest.json   name, source, times, sizes, checksum, MAC

Authenticated end to end (format 2): the data file's header names its backup
(source, name, start time) and every chunk authenticates the header; the
manifest carries ``keyCheck`` and ``mac``, an HMAC with a key derived from the
backup key over the rest of it. Before a byte is restored, the data file must
authenticate and name this folder, and the manifest must authenticate, name
this folder and agree with the data file on source and start time: a file
copied or moved from another backup, or a renamed folder, is Misplaced (10); a
changed manifest is Tampered (5). Retention (``prune``, after every run) counts
only backups whose manifest authenticates and names its folder, each source's
apart; the others are never deleted, and are reported.

Format-1 backups (before authentication) are neither drilled nor pruned, and
are verified or restored only when asked to (``allow_format_1``): nothing
says which backup their data file is, nor when it was made.

The manifest's ``source.serverVersion`` (PostgreSQL, Redis) is the version of
the server backed up, which a restore drill compares with its own.

A run writes into a hidden staging folder and renames it into place only when
complete, so a failed run leaves nothing behind, and nothing unencrypted ever
touches the destination.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .crypto import CHUNK_SIZE, Identity, Keys, encrypt_stream, manifest_mac, open_stream
from .errors import BackupError, Misplaced, Tampered, UsageError, WrongKey
from .retention import Policy, to_delete
from .sources import BackupSource, open_source, redact

__all__ = [
    "Backup",
    "Pruned",
    "Untrusted",
    "authenticated",
    "check_kind",
    "list_backups",
    "prune",
    "restore",
    "run_backup",
    "verify",
]

FORMAT_VERSION = 2
LEGACY_FORMAT = 1
DATA = "data.rbk"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Backup:
    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        """The folder's own name, as it was asked for (a symlink is not followed)."""
        return Path(os.path.abspath(self.path)).name

    @property
    def started(self) -> datetime.datetime:
        return datetime.datetime.fromisoformat(self.manifest["started"])


@dataclass(frozen=True)
class Untrusted:
    """A backup retention and drills do not rely on, and why."""

    backup: Backup
    error: BackupError

    @property
    def reason(self) -> str:
        return str(self.error)


@dataclass(frozen=True)
class Pruned:
    deleted: list[Backup] = field(default_factory=list)
    untrusted: list[Untrusted] = field(default_factory=list)


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)


class _HashingReader:
    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def run_backup(source_url: str, dest: Path, key: bytes, policy: Policy) -> tuple[Backup, Pruned]:
    """Back up, then prune; returns the new backup and what pruning did."""
    source = open_source(source_url)
    dest.mkdir(parents=True, exist_ok=True)
    started = _now()
    name = f"{started:%Y%m%dT%H%M%SZ}-{source.kind}"
    identity = Identity(source.kind, redact(source_url), name, started.isoformat())
    clock = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=".incomplete-", dir=dest))
    try:
        with (staging / DATA).open("wb") as raw:
            writer = _HashingWriter(raw)
            plain_size = encrypt_stream(source.dump(), writer, key, identity)  # type: ignore[arg-type]
            raw.flush()
            os.fsync(raw.fileno())
        # After the dump: an unreachable source fails with pg_dump's own words.
        version = source.server_version()
        manifest: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "name": name,
            "source": {
                "kind": source.kind,
                "url": identity.source,
                **({"serverVersion": version} if version else {}),
            },
            "started": identity.started,
            "finished": _now().isoformat(),
            "durationSeconds": round(time.monotonic() - clock, 3),
            "size": writer.size,
            "plainSize": plain_size,
            "sha256": writer.digest.hexdigest(),
            "chunkSize": CHUNK_SIZE,
            "encryption": "AES-256-GCM, gzip inside; keys derived with HKDF-SHA256",
            "keyCheck": Keys.derive(key).check.hex(),
        }
        manifest["mac"] = manifest_mac(manifest, key)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        final = dest / name
        if final.exists():
            raise BackupError(f"{final} already exists: one backup per second at most")
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = Backup(final, manifest)
    return backup, prune(dest, policy, key)


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except ValueError as error:  # not JSON, or not UTF-8
        raise Tampered(f"{MANIFEST} in {folder.name} is not JSON: it was changed") from error
    if not isinstance(manifest, dict):
        raise Tampered(f"{MANIFEST} in {folder.name} is not a JSON object: it was changed")
    return manifest


def _complete(dest: Path) -> list[Path]:
    """The folders in DEST that a run completed (it renames its staging folder last)."""
    folders = sorted(dest.glob("*")) if dest.is_dir() else []
    return [f for f in folders if not f.name.startswith(".") and (f / MANIFEST).is_file()]


def list_backups(dest: Path, strict: bool = False) -> list[Backup]:
    """Every complete backup whose manifest reads, of any format, oldest name first
    (``strict``: a manifest that does not read is Tampered).

    What the manifests claim, unauthenticated: ``authenticated`` says what to trust."""
    backups = []
    for folder in _complete(dest):
        try:
            backups.append(Backup(folder, _read_manifest(folder)))
        except (OSError, BackupError):
            if strict:
                raise
    return backups


def authenticated(dest: Path, key: bytes) -> tuple[list[Backup], list[Untrusted]]:
    """The backups in DEST whose manifest authenticates with ``key`` and names its
    folder (their times can be trusted), and the others, each with the reason."""
    trusted, untrusted = [], []
    for folder in _complete(dest):
        try:
            backup = Backup(folder, _read_manifest(folder))
        except (OSError, BackupError) as error:
            failure = error if isinstance(error, BackupError) else UsageError(str(error))
            untrusted.append(Untrusted(Backup(folder, {}), failure))
            continue
        problem = _manifest_problem(backup, key)
        if problem is None:
            trusted.append(backup)
        else:
            untrusted.append(Untrusted(backup, problem))
    return trusted, untrusted


def find(reference: str, dest: Path | None = None) -> Backup:
    path = Path(reference)
    if not path.is_dir() and dest is not None:
        path = dest / reference
    if not (path / MANIFEST).is_file():
        raise UsageError(f"{reference}: no backup there (no {MANIFEST})")
    return Backup(path, _read_manifest(path))


def _manifest_problem(backup: Backup, key: bytes) -> BackupError | None:
    """Why the manifest cannot be trusted, or None: it authenticates and names its folder."""
    manifest, folder = backup.manifest, backup.name
    problem = _unauthentic(manifest, folder, key)
    if problem is None and manifest.get("name") != folder:
        return Misplaced(
            f"{MANIFEST} in {folder} is backup {manifest.get('name')}'s: "
            "the folder was renamed, or the manifest copied here"
        )
    return problem


def _unauthentic(manifest: dict[str, Any], folder: str, key: bytes) -> BackupError | None:
    """Why the manifest does not authenticate with ``key``, or None."""
    form = manifest.get("format")
    if form == LEGACY_FORMAT:
        return UsageError(
            f"{folder} is a format-1 backup, from before backups were authenticated: "
            "nothing proves which backup its data is, nor when it was made"
        )
    if form != FORMAT_VERSION:
        return Tampered(f"{MANIFEST} in {folder} has no known format: it was changed")
    check = manifest.get("keyCheck")
    if not isinstance(check, str) or not hmac.compare_digest(check, Keys.derive(key).check.hex()):
        return WrongKey(f"{folder} was made with another key (its key check differs)")
    mac = manifest.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, manifest_mac(manifest, key)):
        return Tampered(f"{MANIFEST} in {folder} does not authenticate: it was changed or forged")
    return None


def _identity_of(manifest: dict[str, Any]) -> Identity:
    source = manifest.get("source")
    source = source if isinstance(source, dict) else {}
    return Identity(
        kind=str(source.get("kind")),
        source=str(source.get("url")),
        name=str(manifest.get("name")),
        started=str(manifest.get("started")),
    )


def _check_belongs(backup: Backup, key: bytes, identity: Identity | None) -> None:
    """The data file's authenticated identity against its folder and manifest."""
    folder, legacy = backup.name, backup.manifest.get("format") == LEGACY_FORMAT
    if identity is None:  # a format-1 stream: it names no backup
        if not legacy:
            raise Tampered(
                f"{DATA} in {folder} is a format-1 stream under a format-2 manifest: "
                "the data file was replaced"
            )
        return  # a format-1 backup, which the caller was allowed to read
    if identity.name != folder:
        manifest = backup.manifest
        if manifest.get("name") == identity.name and _unauthentic(manifest, folder, key) is None:
            raise Misplaced(
                f"the folder {folder} holds backup {identity.describe()}: the folder was "
                "renamed, or that backup's files copied into it"
            )
        raise Misplaced(
            f"{DATA} in {folder} belongs to backup {identity.describe()}: "
            "it was copied or moved here"
        )
    if legacy:
        raise Tampered(
            f"{MANIFEST} in {folder} says format 1, but {DATA} is format 2: "
            "the manifest was replaced"
        )
    problem = _manifest_problem(backup, key)
    if isinstance(problem, WrongKey):  # while the data file's key check is this key's
        raise Tampered(f"{MANIFEST} in {folder} was changed: its key check is not this key's")
    if problem is not None:
        raise problem
    claimed = _identity_of(backup.manifest)
    if claimed != identity:
        raise Misplaced(
            f"{DATA} in {folder} is backup {identity.describe()}, its manifest says "
            f"{claimed.describe()}: one of them was copied from another destination"
        )


def _read(
    backup: Backup,
    key: bytes,
    allow_format_1: bool,
    out: BinaryIO | None = None,
    accepted: Callable[[], None] | None = None,
) -> int:
    """Authenticate the data file and the manifest, then every chunk; returns the
    plaintext size. ``out`` gets the plaintext (to be used only if this returns);
    ``accepted`` runs once the backup is known to be this folder's, before the rest."""
    if backup.manifest.get("format") == LEGACY_FORMAT and not allow_format_1:
        raise UsageError(
            f"{backup.name} is a format-1 backup: its name, source and times are not "
            "authenticated; give --allow-format-1 to use it anyway, if you know where it "
            "came from"
        )
    data = backup.path / DATA
    if not data.is_file():
        raise Tampered(f"{backup.name} has no {DATA}: it was removed")
    size = 0
    with data.open("rb") as raw:
        hashing = _HashingReader(raw)
        identity, blocks = open_stream(hashing, key)  # type: ignore[arg-type]
        _check_belongs(backup, key, identity)
        if accepted is not None:
            accepted()
        for block in blocks:
            size += len(block)
            if out is not None:
                out.write(block)
    manifest = backup.manifest
    if hashing.digest.hexdigest() != manifest.get("sha256") or (
        "size" in manifest and hashing.size != manifest["size"]
    ):
        raise Tampered("the checksum differs from the manifest's")
    return size


def verify(backup: Backup, key: bytes, allow_format_1: bool = False) -> int:
    """Authenticate the backup and every chunk, restore nothing; returns the plaintext size."""
    return _read(backup, key, allow_format_1)


def check_kind(backup: Backup, target: BackupSource) -> None:
    if target.kind != backup.manifest["source"]["kind"]:
        raise UsageError(
            f"a {backup.manifest['source']['kind']} backup cannot be restored "
            f"into a {target.kind} target"
        )


def restore(
    backup: Backup,
    target_url: str,
    key: bytes,
    throwaway: bool = False,
    allow_format_1: bool = False,
) -> int:
    """Decrypt and authenticate the whole backup into a staging file first: a bad
    chunk, or another backup's file, restores nothing.

    Returns the number of plaintext bytes restored. ``throwaway``: see BackupSource.restore.
    """
    target = open_source(target_url)
    with tempfile.TemporaryDirectory(prefix="rampart-restore-") as tmp:
        staged = Path(tmp) / "plain"
        os.chmod(tmp, 0o700)
        with staged.open("wb") as out:
            size = _read(backup, key, allow_format_1, out, lambda: check_kind(backup, target))
        target.restore(str(staged), throwaway)
    return size


def prune(dest: Path, policy: Policy, key: bytes) -> Pruned:
    """Delete what the policy does not keep, deciding from authenticated manifests only.

    Each source's backups (kind and URL) are a series of their own; a backup
    whose manifest does not authenticate with ``key`` or does not name its
    folder (a format-1 backup, a changed or forged manifest, another key's, a
    renamed folder) is never deleted and never counts: it is returned, untrusted.
    """
    trusted, untrusted = authenticated(dest, key)
    series: dict[tuple[str, str], list[Backup]] = {}
    for backup in trusted:
        claimed = _identity_of(backup.manifest)
        series.setdefault((claimed.kind, claimed.source), []).append(backup)
    deleted = []
    for backups in series.values():
        doomed = set(to_delete([b.started for b in backups], policy))
        deleted += [b for b in backups if b.started in doomed]
    for backup in sorted(deleted, key=lambda b: b.name):
        shutil.rmtree(backup.path)
    return Pruned(sorted(deleted, key=lambda b: b.name), untrusted)
