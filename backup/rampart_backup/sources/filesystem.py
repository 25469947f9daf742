"""A filesystem path: a tar stream; restored beside the target, then swapped in.

An empty target directory is restored in place instead: it may be a volume's
mount point (a restore drill's emptyDir), which cannot be renamed and whose
parent may be read-only. On failure it is emptied again, so either way a
failed restore keeps nothing.
"""

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

    def restore(self, staged: str, throwaway: bool = False) -> None:
        target = self.path
        if target.is_dir() and not any(target.iterdir()):
            self._restore_in_place(staged)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.restore-", dir=target.parent))
        try:
            with tarfile.open(staged, mode="r") as tar:
                tar.extractall(staging, filter="data")  # refuses absolute paths and ..
        except (tarfile.TarError, OSError) as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestoreFailed(f"could not unpack into {target}: {error}") from error
        # mkdtemp made the staging folder 0700: the folder swapped in keeps the
        # target's own mode (0755 for most), or the usual one for a new folder.
        mode = target.stat().st_mode & 0o7777 if target.exists() else 0o777 & ~_umask()
        staging.chmod(mode)
        previous = target.with_name(f".{target.name}.previous-{os.getpid()}")
        if target.exists():
            target.rename(previous)
        staging.rename(target)
        shutil.rmtree(previous, ignore_errors=True)

    def _restore_in_place(self, staged: str) -> None:
        try:
            with tarfile.open(staged, mode="r") as tar:
                tar.extractall(self.path, filter="data")  # refuses absolute paths and ..
        except (tarfile.TarError, OSError) as error:
            for child in self.path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
            raise RestoreFailed(f"could not unpack into {self.path}: {error}") from error

    def probe(self) -> str | None:
        # A path "accepts connections" when its restore can start: the parent is there.
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return f"cannot create {self.path.parent}: {error.strerror}"
        return None

    def server_version(self) -> str | None:
        return None  # no server: nothing to be incompatible with

    def inventory(self) -> dict[str, int]:
        files = size = 0
        for root, _dirs, names in os.walk(self.path):
            for name in names:
                files += 1
                size += (Path(root) / name).lstat().st_size
        return {"files": files, "bytes": size}


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
