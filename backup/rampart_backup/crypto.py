"""The encrypted stream: gzip, then AES-256-GCM in chunks, nothing in the clear.

    header  b"RMPBK1" | chunk size (4) | nonce prefix (8) | key check (16)
    chunk   length (4) | ciphertext + tag      repeated; the last one marked

Each chunk's nonce is the random prefix and the chunk's index, and its
associated data is the header, the index and whether it is the last chunk:
chunks cannot be reordered, dropped or spliced from another backup, and a
file cut after any chunk but the last is detected as truncated. The key check
(HMAC of a constant) tells a wrong key apart from a tampered file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import Tampered, Truncated, UsageError, WrongKey

__all__ = ["CHUNK_SIZE", "decrypt_stream", "encrypt_stream", "load_key"]

MAGIC = b"RMPBK1"
CHUNK_SIZE = 1024 * 1024
_HEADER = struct.Struct("!6sI8s16s")
_LENGTH = struct.Struct("!I")


def load_key(path: Path) -> bytes:
    """A 32-byte key from a file: raw, hex or base64 (as a Kubernetes Secret holds it)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read key file {path}: {error.strerror}") from error
    if len(data) == 32:
        return data
    text = data.strip()
    for decode in (binascii.unhexlify, base64.b64decode):
        try:
            key = decode(text)
        except (binascii.Error, ValueError):
            continue
        if len(key) == 32:
            return key
    raise UsageError(
        f"{path}: the key must be 32 bytes, raw, hex or base64 (e.g. `openssl rand -hex 32`)"
    )


def _key_check(key: bytes) -> bytes:
    return hmac.new(key, b"rampart-backup key check", hashlib.sha256).digest()[:16]


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack("!I", index)


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack("!I?", index, last)


def encrypt_stream(
    plain: Iterator[bytes], out: BinaryIO, key: bytes, chunk_size: int = CHUNK_SIZE
) -> int:
    """Compress and encrypt ``plain`` into ``out``; returns the plaintext size."""
    aead = AESGCM(key)
    header = _HEADER.pack(MAGIC, chunk_size, os.urandom(8), _key_check(key))
    out.write(header)
    prefix = header[10:18]
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing
    pending = b""
    index = 0
    size = 0

    def seal(data: bytes, last: bool) -> None:
        nonlocal index
        sealed = aead.encrypt(_nonce(prefix, index), data, _aad(header, index, last))
        out.write(_LENGTH.pack(len(sealed)))
        out.write(sealed)
        index += 1

    for block in plain:
        size += len(block)
        pending += compressor.compress(block)
        while len(pending) >= chunk_size:
            seal(pending[:chunk_size], last=False)
            pending = pending[chunk_size:]
    pending += compressor.flush()
    while len(pending) > chunk_size:
        seal(pending[:chunk_size], last=False)
        pending = pending[chunk_size:]
    seal(pending, last=True)
    return size


def decrypt_stream(source: BinaryIO, key: bytes) -> Iterator[bytes]:
    """Authenticate and decrypt chunk by chunk, yielding the original bytes.

    Raises WrongKey, Tampered or Truncated; a consumer that must not act on
    partial data reads everything before using it (``verify``), or stages it.
    """
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise Truncated("the file ends inside its header")
    magic, _chunk_size, prefix, check = _HEADER.unpack(header)
    if magic != MAGIC:
        raise Tampered("not a Rampart backup (bad magic bytes)")
    if not hmac.compare_digest(check, _key_check(key)):
        raise WrongKey("the key does not match the one this backup was made with")
    aead = AESGCM(key)
    decompressor = zlib.decompressobj(31)
    index = 0
    while True:
        length_bytes = source.read(_LENGTH.size)
        if not length_bytes:
            raise Truncated(f"the file ends after chunk {index - 1}, before its last chunk")
        if len(length_bytes) < _LENGTH.size:
            raise Truncated(f"the file ends inside chunk {index}")
        (length,) = _LENGTH.unpack(length_bytes)
        sealed = source.read(length)
        if len(sealed) < length:
            raise Truncated(f"the file ends inside chunk {index}")
        nonce = _nonce(prefix, index)
        try:
            data = aead.decrypt(nonce, sealed, _aad(header, index, False))
            last = False
        except InvalidTag:
            try:
                data = aead.decrypt(nonce, sealed, _aad(header, index, True))
                last = True
            except InvalidTag:
                raise Tampered(
                    f"chunk {index} failed authentication: the file was changed"
                ) from None
        yield decompressor.decompress(data)
        index += 1
        if last:
            rest = decompressor.flush()
            if rest:
                yield rest
            if source.read(1):
                raise Tampered("data after the last chunk")
            return
