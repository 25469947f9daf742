"""The encrypted stream: gzip, then AES-256-GCM in chunks, and the keys behind it.

Format 2 (written since backups are authenticated end to end):

    header  b"RMPBK2" | chunk size (4) | nonce prefix (8) | key check (16)
            | identity length (2) | identity (canonical JSON: kind, source, name, started)
    chunk   length (4) | ciphertext + tag      repeated; the last one marked

The backup key is never used directly: HKDF-SHA256 derives from it one key
for the chunks (info ``rampart-backup data v2``), one for the manifest's MAC
(``rampart-backup manifest v2``) and the key check (``rampart-backup key check
v2``), 16 bytes that tell a wrong key apart from a changed file and reveal
nothing of the other two.

Each chunk's nonce is the random prefix and the chunk's index, and its
associated data is the whole header (hence the backup's identity: its source,
its name and when it started), the index and whether it is the last chunk:
chunks cannot be reordered, dropped or spliced from another backup, a file cut
after any chunk but the last is detected as truncated, and a data file carries
the name of the backup it belongs to, authenticated by its first chunk, so a
file copied into another backup's folder is told apart (store.py).

Format 1 (``RMPBK1``, before): the same without the identity, the backup key
used as is and a key check of HMAC(key, constant). It is still read, for the
backups made before; store.py decides when it may be.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import string
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import Tampered, Truncated, UsageError, WrongKey

__all__ = [
    "CHUNK_SIZE",
    "Identity",
    "Keys",
    "decrypt_stream",
    "encrypt_stream",
    "load_key",
    "manifest_mac",
    "open_stream",
]

MAGIC_V1 = b"RMPBK1"
MAGIC = b"RMPBK2"
CHUNK_SIZE = 1024 * 1024
_FIXED = struct.Struct("!6sI8s16s")  # both formats begin so
_IDENTITY_LENGTH = struct.Struct("!H")
_LENGTH = struct.Struct("!I")
MAX_CHUNK = 64 * 1024 * 1024  # a length beyond this is a changed file, not a chunk

KEY_SIZE = 32
MIN_DISTINCT = 16  # random 32 bytes have ~30 distinct values; fewer than 16: p < 1e-16


# ---------------------------------------------------------------- the key


def load_key(path: Path) -> bytes:
    """A 32-byte random key from a file: raw, hex or base64 (as a Kubernetes Secret holds it).

    Refused (UsageError, naming the problem): another length, and a key that
    is not random: a passphrase (32 printable characters), few distinct byte
    values, a repeated block, or a hex or base64 text that random bytes would
    not give (hex without a letter or without a digit, base64 without both
    lower- and uppercase letters). Random keys fail these with a probability
    below 1e-9 (the base64 test; the others below 1e-13).
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UsageError(f"cannot read key file {path}: {error.strerror}") from error
    advice = "use 32 random bytes, e.g. `openssl rand -hex 32`"
    if len(data) == KEY_SIZE:
        _check_random(path, data, "", advice)
        return data
    text = data.strip()
    for encoding, decode in (
        ("hex", binascii.unhexlify),
        ("base64", lambda t: base64.b64decode(t, validate=True)),
    ):
        try:
            key = decode(text)
        except (binascii.Error, ValueError):
            continue
        if len(key) == KEY_SIZE:
            _check_text(path, text, encoding, advice)
            _check_random(path, key, f" (after {encoding} decoding)", advice)
            return key
    raise UsageError(f"{path}: the key must be 32 bytes, raw, hex or base64: {advice}")


def _check_random(path: Path, key: bytes, decoded: str, advice: str) -> None:
    printable = set(string.printable.encode()) - set(b"\t\n\r\x0b\x0c")
    if all(byte in printable for byte in key):
        raise UsageError(
            f"{path}: weak key: its 32 bytes{decoded} are all printable characters, "
            f"a passphrase or text (or a 16-byte key written as hex), not random bytes: {advice}"
        )
    distinct = len(set(key))
    if distinct < MIN_DISTINCT:
        raise UsageError(
            f"{path}: weak key: only {distinct} distinct byte values{decoded} "
            f"(random 32 bytes have about 30): {advice}"
        )
    for period in range(1, KEY_SIZE // 2 + 1):
        if key == (key[:period] * (KEY_SIZE // period + 1))[:KEY_SIZE]:
            raise UsageError(
                f"{path}: weak key: a {period}-byte block repeated{decoded}, "
                f"not random bytes: {advice}"
            )


def _check_text(path: Path, text: bytes, encoding: str, advice: str) -> None:
    if encoding == "hex":
        letters = any(chr(c) in "abcdefABCDEF" for c in text)
        digits = any(chr(c).isdigit() for c in text)
        if not (letters and digits):
            missing = "letter a-f" if not letters else "digit"
            raise UsageError(
                f"{path}: weak key: its hex text has no {missing}, which 32 random bytes "
                f"would almost never give (a number or a pattern): {advice}"
            )
    else:
        lower = any(chr(c).islower() for c in text)
        upper = any(chr(c).isupper() for c in text)
        if not (lower and upper):
            case = "lowercase" if not lower else "uppercase"
            raise UsageError(
                f"{path}: weak key: its base64 text has no {case} letter, which 32 random "
                f"bytes would almost never give (words or a pattern): {advice}"
            )


@dataclass(frozen=True)
class Keys:
    """What a format-2 backup uses, each derived from the backup key with HKDF-SHA256."""

    data: bytes
    manifest: bytes
    check: bytes

    @classmethod
    def derive(cls, key: bytes) -> Keys:
        return cls(
            data=_hkdf(key, b"rampart-backup data v2", 32),
            manifest=_hkdf(key, b"rampart-backup manifest v2", 32),
            check=_hkdf(key, b"rampart-backup key check v2", 16),
        )


def _hkdf(key: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=None, info=info).derive(key)


def _key_check_v1(key: bytes) -> bytes:
    return hmac.new(key, b"rampart-backup key check", hashlib.sha256).digest()[:16]


def _canonical(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_mac(manifest: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256, with the derived manifest key, of the manifest without its ``mac``,
    as canonical JSON (sorted keys, no spaces, ASCII)."""
    body = {name: value for name, value in manifest.items() if name != "mac"}
    return hmac.new(Keys.derive(key).manifest, _canonical(body), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- the stream


@dataclass(frozen=True)
class Identity:
    """Which backup a data file belongs to: in its header, authenticated by every chunk."""

    kind: str
    source: str  # the source's URL, credentials removed
    name: str  # the backup's folder, e.g. 20261123T020000Z-postgresql
    started: str  # ISO 8601, as the manifest has it

    def encode(self) -> bytes:
        return _canonical(asdict(self))

    @classmethod
    def decode(cls, data: bytes) -> Identity:
        try:
            fields = json.loads(data)
            identity = cls(**fields)
        except (ValueError, TypeError) as error:
            raise Tampered("the header was changed: its identity does not parse") from error
        if not all(isinstance(value, str) for value in asdict(identity).values()):
            raise Tampered("the header was changed: its identity does not parse")
        return identity

    def describe(self) -> str:
        return f"{self.name} ({self.kind} from {self.source}, started {self.started})"


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack("!I", index)


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack("!I?", index, last)


def encrypt_stream(
    plain: Iterator[bytes],
    out: BinaryIO,
    key: bytes,
    identity: Identity,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Compress and encrypt ``plain`` into ``out`` (format 2); returns the plaintext size."""
    keys = Keys.derive(key)
    aead = AESGCM(keys.data)
    named = identity.encode()
    prefix = os.urandom(8)
    header = (
        _FIXED.pack(MAGIC, chunk_size, prefix, keys.check)
        + _IDENTITY_LENGTH.pack(len(named))
        + named
    )
    out.write(header)
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


def _read(source: BinaryIO, size: int, where: str) -> bytes:
    data = source.read(size)
    if len(data) < size:
        raise Truncated(f"the file ends inside {where}")
    return data


def open_stream(source: BinaryIO, key: bytes) -> tuple[Identity | None, Iterator[bytes]]:
    """Read the header and authenticate the first chunk, at once; then the rest, lazily.

    Returns the backup's identity (None for a format-1 stream, which has none),
    authenticated by the first chunk, and the original bytes, chunk by chunk.
    Raises WrongKey, Tampered or Truncated; a consumer that must not act on
    partial data reads everything before using it (``verify``), or stages it.
    """
    fixed = source.read(_FIXED.size)
    if len(fixed) < _FIXED.size:
        raise Truncated("the file ends inside its header")
    magic, chunk_size, prefix, check = _FIXED.unpack(fixed)
    identity: Identity | None
    if magic == MAGIC:
        keys = Keys.derive(key)
        if not hmac.compare_digest(check, keys.check):
            raise WrongKey("the key does not match the one this backup was made with")
        (length,) = _IDENTITY_LENGTH.unpack(_read(source, _IDENTITY_LENGTH.size, "its header"))
        named = _read(source, length, "its header")
        header = fixed + _IDENTITY_LENGTH.pack(length) + named
        aead = AESGCM(keys.data)
        identity = Identity.decode(named)
    elif magic == MAGIC_V1:
        if not hmac.compare_digest(check, _key_check_v1(key)):
            raise WrongKey("the key does not match the one this backup was made with")
        header, aead, identity = fixed, AESGCM(key), None
    else:
        raise Tampered("not a Rampart backup (bad magic bytes)")
    reader = _Chunks(source, aead, prefix, header, min(chunk_size + 16, MAX_CHUNK))
    first = reader.chunk(0)
    return identity, reader.rest(first)


class _Chunks:
    def __init__(
        self, source: BinaryIO, aead: AESGCM, prefix: bytes, header: bytes, longest: int
    ) -> None:
        self.source, self.aead, self.prefix, self.header = source, aead, prefix, header
        self.longest = longest  # a sealed chunk is at most the chunk size and its tag

    def chunk(self, index: int) -> tuple[bytes, bool]:
        """Chunk ``index``, authenticated, and whether it is the last."""
        length_bytes = self.source.read(_LENGTH.size)
        if not length_bytes:
            raise Truncated(f"the file ends after chunk {index - 1}, before its last chunk")
        if len(length_bytes) < _LENGTH.size:
            raise Truncated(f"the file ends inside chunk {index}")
        (length,) = _LENGTH.unpack(length_bytes)
        if length > self.longest:
            raise Tampered(f"chunk {index} failed authentication: the file was changed")
        sealed = _read(self.source, length, f"chunk {index}")
        nonce = _nonce(self.prefix, index)
        for last in (False, True):
            try:
                return self.aead.decrypt(nonce, sealed, _aad(self.header, index, last)), last
            except InvalidTag:
                continue
        raise Tampered(f"chunk {index} failed authentication: the file was changed")

    def rest(self, first: tuple[bytes, bool]) -> Iterator[bytes]:
        decompressor = zlib.decompressobj(31)
        data, last = first
        index = 0
        while True:
            yield decompressor.decompress(data)
            if last:
                rest = decompressor.flush()
                if rest:
                    yield rest
                if self.source.read(1):
                    raise Tampered("data after the last chunk")
                return
            index += 1
            data, last = self.chunk(index)


def decrypt_stream(source: BinaryIO, key: bytes) -> Iterator[bytes]:
    """The original bytes of a stream of either format, authenticated chunk by chunk.

    Lazy: nothing is read before the first block is asked for."""
    _identity, blocks = open_stream(source, key)
    yield from blocks
