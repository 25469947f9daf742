"""Backups in a directory (a mounted PVC): one folder each, with a manifest.

    DEST/20261123T020000Z-postgresql/data.rbk        the encrypted stream
    DEST/20261123T020000Z-postgresql/manifest.json   source, times, sizes, checksum

The manifest's ``source.serverVersion`` (PostgreSQL, Redis) is the version of
the server backed up, which a restore drill compares with its own; manifests
written before it was recorded lack it, and stay readable.

A run writes into a hidden staging folder and renames it into place only when
complete, so a failed run leaves nothing behind, and nothing unencrypted ever
touches the destination.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .crypto import CHUNK_SIZE, decrypt_stream, encrypt_stream
from .errors import BackupError, Tampered, UsageError
from .retention import Policy, to_delete
from .sources import BackupSource, open_source, redact

__all__ = ["Backup", "check_kind", "list_backups", "prune", "restore", "run_backup", "verify"]

FORMAT_VERSION = 1
DATA = "data.rbk"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Backup:
    path: Path
    manifest: dict[str, Any]

    @property
    def started(self) -> datetime.datetime:
        return datetime.datetime.fromisoformat(self.manifest["started"])


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def run_backup(source_url: str, dest: Path, key: bytes, policy: Policy) -> Backup:
    source = open_source(source_url)
    dest.mkdir(parents=True, exist_ok=True)
    started = _now()
    clock = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=".incomplete-", dir=dest))
    try:
        with (staging / DATA).open("wb") as raw:
            writer = _HashingWriter(raw)
            plain_size = encrypt_stream(source.dump(), writer, key)  # type: ignore[arg-type]
            raw.flush()
            os.fsync(raw.fileno())
        # After the dump: an unreachable source fails with pg_dump's own words.
        version = source.server_version()
        manifest = {
            "format": FORMAT_VERSION,
            "source": {
                "kind": source.kind,
                "url": redact(source_url),
                **({"serverVersion": version} if version else {}),
            },
            "started": started.isoformat(),
            "finished": _now().isoformat(),
            "durationSeconds": round(time.monotonic() - clock, 3),
            "size": writer.size,
            "plainSize": plain_size,
            "sha256": writer.digest.hexdigest(),
            "chunkSize": CHUNK_SIZE,
            "encryption": "AES-256-GCM, gzip inside",
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        final = dest / f"{started:%Y%m%dT%H%M%SZ}-{source.kind}"
        if final.exists():
            raise BackupError(f"{final} already exists: one backup per second at most")
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    backup = Backup(final, manifest)
    prune(dest, policy)
    return backup


def list_backups(dest: Path) -> list[Backup]:
    backups = []
    for folder in sorted(dest.glob("*")) if dest.is_dir() else []:
        manifest_file = folder / MANIFEST
        if folder.name.startswith(".") or not manifest_file.is_file():
            continue
        try:
            manifest = json.loads(manifest_file.read_text())
        except (OSError, ValueError):
            continue
        if manifest.get("format") == FORMAT_VERSION:
            backups.append(Backup(folder, manifest))
    return backups


def find(reference: str, dest: Path | None = None) -> Backup:
    path = Path(reference)
    if not path.is_dir() and dest is not None:
        path = dest / reference
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise UsageError(f"{reference}: no backup there (no {MANIFEST})")
    return Backup(path, json.loads(manifest_file.read_text()))


def verify(backup: Backup, key: bytes) -> int:
    """Check the checksum and authenticate every chunk; returns the plaintext size."""
    data = backup.path / DATA
    digest = hashlib.sha256()
    with data.open("rb") as raw:
        while block := raw.read(1 << 20):
            digest.update(block)
    size = 0
    with data.open("rb") as raw:
        for block in decrypt_stream(raw, key):
            size += len(block)
    if digest.hexdigest() != backup.manifest["sha256"]:
        raise Tampered("the checksum differs from the manifest's")
    return size


def check_kind(backup: Backup, target: BackupSource) -> None:
    if target.kind != backup.manifest["source"]["kind"]:
        raise UsageError(
            f"a {backup.manifest['source']['kind']} backup cannot be restored "
            f"into a {target.kind} target"
        )


def restore(backup: Backup, target_url: str, key: bytes, throwaway: bool = False) -> int:
    """Decrypt the whole backup into a staging file first: a bad chunk restores nothing.

    Returns the number of plaintext bytes restored. ``throwaway``: see BackupSource.restore.
    """
    target = open_source(target_url)
    check_kind(backup, target)
    verify(backup, key)
    size = 0
    with tempfile.TemporaryDirectory(prefix="rampart-restore-") as tmp:
        staged = Path(tmp) / "plain"
        os.chmod(tmp, 0o700)
        with (backup.path / DATA).open("rb") as raw, staged.open("wb") as out:
            for block in decrypt_stream(raw, key):
                size += out.write(block)
        target.restore(str(staged), throwaway)
    return size


def prune(dest: Path, policy: Policy) -> list[Backup]:
    """Delete what the policy does not keep; only complete backups count."""
    backups = list_backups(dest)
    doomed = set(to_delete([b.started for b in backups], policy))
    deleted = [b for b in backups if b.started in doomed]
    for backup in deleted:
        shutil.rmtree(backup.path)
    return deleted
