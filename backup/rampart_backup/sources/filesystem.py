"""A filesystem path: a tar stream; restored beside the target, then swapped in."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import RestoreFailed, SourceUnreachable

__all__ = ["PathSource"]


class _Buffer:
    """A write-only file for tarfile whose contents are taken as they come."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, block: bytes) -> int:
        self.data += block
        return len(block)

    def take(self) -> bytes:
        out, self.data = bytes(self.data), bytearray()
        return out


class PathSource:
    kind = "path"

    def __init__(self, url: str) -> None:
        self.path = Path(unquote(urlsplit(url).path))

    def dump(self) -> Iterator[bytes]:
        if not self.path.is_dir():
            raise SourceUnreachable(f"{self.path} is not a directory")
        buffer = _Buffer()
        with tarfile.open(fileobj=buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            for root, dirs, files in os.walk(self.path):
                dirs.sort()
                for name in sorted(files):
                    full = Path(root) / name
                    tar.add(full, arcname=str(full.relative_to(self.path)), recursive=False)
                    if len(buffer.data) >= 1 << 20:
                        yield buffer.take()
        yield buffer.take()

    def restore(self, staged: str) -> None:
        target = self.path
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
        try:
            with tarfile.open(staged, mode="r") as tar:
                tar.extractall(staging, filter="data")  # refuses absolute paths and ..
        except (tarfile.TarError, OSError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestoreFailed(f"could not unpack into {target}: {error}") from error
        previous = target.with_name(f".{target.name}.previous-{os.getpid()}")
        if target.exists():
            target.rename(previous)
        staging.rename(target)
        shutil.rmtree(previous, ignore_errors=True)
