"""``rampart-backup`` answers a user's mistake with one line and its exit status."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = Path(sys.executable).parent / "rampart-backup"


def agent(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AGENT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(os.urandom(32).hex())
    return path


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_destination_that_cannot_be_written_is_a_usage_error(key: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a folder")
    done = agent(
        "run",
        "--dest",
        str(blocked / "backups"),
        "--key-file",
        str(key),
        "--source",
        f"file://{tmp_path}",
    )
    assert done.returncode == 2
    assert one_line(done).startswith(f"rampart-backup: UsageError: {blocked / 'backups'}")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--key-file", "/nowhere/key"), "cannot read key file /nowhere/key"),
        (("--source", "ftp://host/x"), "unknown source"),
    ],
)
def test_bad_arguments_are_one_line_and_status_2(
    key: Path, tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    base = {"--key-file": str(key), "--source": f"file://{tmp_path}"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [part for pair in base.items() for part in pair]
    done = agent("run", "--dest", str(tmp_path / "dest"), *flat)
    assert done.returncode == 2
    assert says in one_line(done)


def test_an_unreachable_database_is_one_line_and_status_3(key: Path, tmp_path: Path) -> None:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))  # bound, never listening: refused at once
    port = held.getsockname()[1]
    try:
        done = agent(
            "run",
            "--dest",
            str(tmp_path / "dest"),
            "--key-file",
            str(key),
            RAMPART_BACKUP_SOURCE=f"postgresql://app:s3cret@127.0.0.1:{port}/shop",
        )
    finally:
        held.close()
    assert done.returncode == 3
    line = one_line(done)
    assert line.startswith("rampart-backup: SourceUnreachable: ")
    assert "s3cret" not in line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"correct horse battery staple!!!!", "all printable characters"),
        (b"0123456789abcdef0123456789abcdef", "a 16-byte key written as hex"),
        (b"00" * 32, "hex text has no letter"),
        (bytes(32), "only 1 distinct byte value"),
    ],
)
@pytest.mark.parametrize("command", ["run", "verify", "prune"])
def test_a_weak_key_is_refused_before_any_work(
    tmp_path: Path, content: bytes, says: str, command: str
) -> None:
    weak = tmp_path / "weak-key"
    weak.write_bytes(content)
    dest = tmp_path / "dest"
    extra = ["--source", f"file://{tmp_path}"] if command == "run" else []
    done = agent(command, "--dest", str(dest), "--key-file", str(weak), *extra)
    assert done.returncode == 2, done.stderr
    line = one_line(done)
    assert line.startswith(f"rampart-backup: UsageError: {weak}: weak key: ")
    assert says in line
    assert not dest.exists()  # nothing backed up, nothing pruned
