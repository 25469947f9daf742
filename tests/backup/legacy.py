"""Format-1 backups, written as rampart-backup wrote them before backups were
authenticated end to end: the backup key used as is, no identity in the header,
and a manifest without name, key check or MAC."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import io
import json
import os
import struct
import zlib
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def legacy_stream(plain: bytes, key: bytes, chunk_size: int = 64) -> bytes:
    """``plain`` as a format-1 stream (RMPBK1)."""
    aead = AESGCM(key)
    check = hmac.new(key, b"rampart-backup key check", hashlib.sha256).digest()[:16]
    header = struct.pack("!6sI8s16s", b"RMPBK1", chunk_size, os.urandom(8), check)
    prefix = header[10:18]
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    packed = compressor.compress(plain) + compressor.flush()
    pieces = [packed[i : i + chunk_size] for i in range(0, len(packed), chunk_size)] or [b""]
    out = io.BytesIO()
    out.write(header)
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        nonce = prefix + struct.pack("!I", index)
        sealed = aead.encrypt(nonce, piece, header + struct.pack("!I?", index, last))
        out.write(struct.pack("!I", len(sealed)) + sealed)
    return out.getvalue()


def legacy_backup(
    dest: Path, plain: bytes, key: bytes, started: datetime.datetime, kind: str = "path"
) -> Path:
    """A complete format-1 backup folder in ``dest`` holding ``plain``."""
    folder = dest / f"{started:%Y%m%dT%H%M%SZ}-{kind}"
    folder.mkdir(parents=True)
    data = legacy_stream(plain, key)
    (folder / "data.rbk").write_bytes(data)
    manifest = {
        "format": 1,
        "source": {"kind": kind, "url": "file:///legacy"},
        "started": started.isoformat(),
        "finished": started.isoformat(),
        "durationSeconds": 0.1,
        "size": len(data),
        "plainSize": len(plain),
        "sha256": hashlib.sha256(data).hexdigest(),
        "chunkSize": 64,
        "encryption": "AES-256-GCM, gzip inside",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder
