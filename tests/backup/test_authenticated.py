"""Backups authenticated end to end, attacked on the volume, with the real CLI.

Whoever can write the backup volume but does not hold the key can copy, move,
rename and edit files: an older data file swapped into the newest backup, a
renamed folder, a manifest with another start time. Each is refused with its
own exit status before the target is touched, and retention never acts on a
manifest that does not authenticate.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rampart_backup.crypto import decrypt_stream
from tests.backup.agent import agent, backup
from tests.backup.legacy import legacy_backup
from tests.conftest import PostgresServer
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

WRONG_KEY, TAMPERED, MISPLACED = 4, 5, 10


def wait_past(made: dict[str, Any]) -> None:
    """Until a second after ``made`` started: the next backup gets a name of its own."""
    started = datetime.datetime.fromisoformat(made["started"])
    second_later = started + datetime.timedelta(seconds=1)
    wait_until(lambda: datetime.datetime.now(datetime.UTC) >= second_later, 5, 0.05)


def next_backup(source: str, dest: Path, key_file: Path, after: dict[str, Any]) -> dict[str, Any]:
    wait_past(after)
    return backup(source, dest, key_file)


def error_line(done: subprocess.CompletedProcess[str], kind: str) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"rampart-backup: {kind}: "), done.stderr
    return lines[0]


def verify(dest: Path, key_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return agent("verify", "--dest", str(dest), "--key-file", str(key_file), *extra)


def restore(
    folder: Path, target: str, key_file: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return agent(
        "restore", "--from", str(folder), "--target", target, "--key-file", str(key_file), *extra
    )


def recompute_checksum(folder: Path) -> None:
    """What the attacker can do without the key: make sha256 and size match the data file."""
    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / "data.rbk").read_bytes()
    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["size"] = len(data)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(os.urandom(32).hex())
    return path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ledger.txt").write_text("balance 100\n")
    return folder


def test_an_older_data_file_swapped_into_the_newest_backup_restores_nothing(
    postgres: PostgresServer, tmp_path: Path, key_file: Path
) -> None:
    database = "swap_target"
    postgres.sql(f"drop database if exists {database}")
    postgres.sql(f"create database {database}")
    url = postgres.url.rsplit("/", 1)[0] + f"/{database}"
    postgres.sql("create table accounts (id int primary key, balance int)", database)
    postgres.sql("insert into accounts values (1, 100)", database)
    dest = tmp_path / "dest"
    older = backup(url, dest, key_file)
    postgres.sql("update accounts set balance = 0", database)  # e.g. a revoked grant
    newer = next_backup(url, dest, key_file, older)
    postgres.sql("insert into accounts values (2, 7)", database)
    current = postgres.sql("select string_agg(id || ':' || balance, ',') from accounts", database)

    # The attack: the older data file into the newest folder, its checksum recomputed.
    newest = dest / newer["backup"]
    shutil.copy(dest / older["backup"] / "data.rbk", newest / "data.rbk")
    recompute_checksum(newest)
    checked = verify(dest, key_file, "--backup", newer["backup"])
    assert checked.returncode == MISPLACED, checked.stderr
    line = error_line(checked, "Misplaced")
    assert f"data.rbk in {newer['backup']} belongs to backup {older['backup']}" in line
    assert "copied or moved here" in line
    assert verify(dest, key_file).returncode == MISPLACED  # all of them, too
    restored = restore(newest, url, key_file)
    assert restored.returncode == MISPLACED, restored.stderr
    error_line(restored, "Misplaced")
    assert (
        postgres.sql("select string_agg(id || ':' || balance, ',') from accounts", database)
        == current
    )  # no stale data written back

    # Both files of the older backup copied over the newest's: still not the newest.
    shutil.copy(dest / older["backup"] / "manifest.json", newest / "manifest.json")
    restored = restore(newest, url, key_file)
    assert restored.returncode == MISPLACED, restored.stderr
    assert f"the folder {newer['backup']} holds backup {older['backup']}" in error_line(
        restored, "Misplaced"
    )
    assert (
        postgres.sql("select string_agg(id || ':' || balance, ',') from accounts", database)
        == current
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("started", "2026-01-01T00:00:00+00:00"),
        ("size", 1),
        ("sha256", "0" * 64),
        ("source", {"kind": "path", "url": "file:///elsewhere"}),
        ("mac", None),  # removed
    ],
)
def test_a_changed_manifest_is_tampering(
    tmp_path: Path, key_file: Path, data: Path, field: str, value: object
) -> None:
    dest = tmp_path / "dest"
    made = backup(f"file://{data}", dest, key_file)
    folder = dest / made["backup"]
    manifest = json.loads((folder / "manifest.json").read_text())
    if value is None:
        del manifest[field]
    else:
        manifest[field] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (data / "ledger.txt").write_text("balance 0\n")
    before = tree(data)
    checked = verify(dest, key_file, "--backup", made["backup"])
    assert checked.returncode == TAMPERED, checked.stderr
    line = error_line(checked, "Tampered")
    assert f"manifest.json in {made['backup']} does not authenticate" in line
    restored = restore(folder, f"file://{data}", key_file)
    assert restored.returncode == TAMPERED, restored.stderr
    assert tree(data) == before


def test_a_renamed_folder_is_misplaced(tmp_path: Path, key_file: Path, data: Path) -> None:
    dest = tmp_path / "dest"
    made = backup(f"file://{data}", dest, key_file)
    renamed = dest / "29990101T000000Z-path"  # the "newest", to a drill or a hurried restore
    (dest / made["backup"]).rename(renamed)
    (data / "ledger.txt").write_text("balance 0\n")
    before = tree(data)
    checked = verify(dest, key_file, "--backup", renamed.name)
    assert checked.returncode == MISPLACED, checked.stderr
    line = error_line(checked, "Misplaced")
    assert f"the folder {renamed.name} holds backup {made['backup']} (path from file://" in line
    assert "renamed" in line
    restored = restore(renamed, f"file://{data}", key_file)
    assert restored.returncode == MISPLACED, restored.stderr
    assert tree(data) == before
    # Its own name back, it restores.
    renamed.rename(dest / made["backup"])
    assert restore(dest / made["backup"], f"file://{data}", key_file).returncode == 0
    assert (data / "ledger.txt").read_text() == "balance 100\n"


def test_prune_never_acts_on_a_forged_time(tmp_path: Path, key_file: Path, data: Path) -> None:
    dest = tmp_path / "dest"
    older = backup(f"file://{data}", dest, key_file)
    newer = next_backup(f"file://{data}", dest, key_file, older)
    # The newest backup's manifest says it is years old: keep-last 1 would delete it.
    manifest_file = dest / newer["backup"] / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["started"] = "2001-01-01T00:00:00+00:00"
    manifest_file.write_text(json.dumps(manifest))
    # A copy of the older one claims to be the newest: it would push both real ones out.
    forged = dest / "29990101T000000Z-path"
    shutil.copytree(dest / older["backup"], forged)
    forged_manifest = json.loads((forged / "manifest.json").read_text())
    forged_manifest["started"] = "2999-01-01T00:00:00+00:00"
    forged_manifest["name"] = forged.name
    (forged / "manifest.json").write_text(json.dumps(forged_manifest))

    done = agent("prune", "--dest", str(dest), "--key-file", str(key_file), "--keep-last", "1")
    assert done.returncode == 0, done.stderr
    # The only authenticated backup is the older one: nothing to delete, both others reported.
    assert done.stdout == ""
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [older["backup"], newer["backup"], forged.name]
    )
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 2, done.stderr
    assert all(w.startswith("rampart-backup: warning: ") for w in warnings)
    assert any(f"{newer['backup']}: kept" in w and "does not authenticate" in w for w in warnings)
    assert any(f"{forged.name}: kept" in w and "does not authenticate" in w for w in warnings)

    # The next run prunes among what authenticates only, and says what it did not trust.
    wait_past(newer)
    done = agent(
        "run",
        "--dest",
        str(dest),
        "--key-file",
        str(key_file),
        "--keep-last",
        "1",
        env={"RAMPART_BACKUP_SOURCE": f"file://{data}"},
    )
    assert done.returncode == 0, done.stderr
    latest = json.loads(done.stdout)["backup"]
    assert sorted(p.name for p in dest.iterdir()) == sorted([newer["backup"], forged.name, latest])
    assert done.stderr.count("rampart-backup: warning: ") == 2


def test_the_wrong_key_is_told_apart_from_tampering(
    tmp_path: Path, key_file: Path, data: Path
) -> None:
    dest = tmp_path / "dest"
    made = backup(f"file://{data}", dest, key_file)
    other = tmp_path / "other-key"
    other.write_text(os.urandom(32).hex())
    checked = verify(dest, other)
    assert checked.returncode == WRONG_KEY, checked.stderr
    error_line(checked, "WrongKey")
    restored = restore(dest / made["backup"], f"file://{data}", other)
    assert restored.returncode == WRONG_KEY, restored.stderr
    # Retention with another key trusts nothing, so deletes nothing.
    done = agent("prune", "--dest", str(dest), "--key-file", str(other), "--keep-last", "1")
    assert done.returncode == 0, done.stderr
    assert "was made with another key" in done.stderr
    assert (dest / made["backup"]).is_dir()
    listed = agent("list", "--dest", str(dest), "--key-file", str(other))
    (line,) = listed.stdout.splitlines()
    assert json.loads(line)["authenticated"] is False
    listed = agent("list", "--dest", str(dest), "--key-file", str(key_file))
    assert json.loads(listed.stdout)["authenticated"] is True


def test_a_format_1_backup_is_restored_only_when_asked(
    tmp_path: Path, key_file: Path, data: Path
) -> None:
    dest = tmp_path / "dest"
    archive = tmp_path / "archive"
    (archive / "old").mkdir(parents=True)
    (archive / "old" / "ledger.txt").write_text("balance 50\n")
    made = backup(f"file://{archive / 'old'}", tmp_path / "scratch", key_file)
    key = bytes.fromhex(key_file.read_text())
    with (tmp_path / "scratch" / made["backup"] / "data.rbk").open("rb") as sealed:
        plain = b"".join(decrypt_stream(sealed, key))  # that folder's tar
    started = datetime.datetime(2025, 6, 1, 2, tzinfo=datetime.UTC)
    legacy = legacy_backup(dest, plain, key, started)

    checked = verify(dest, key_file)  # all: skipped, and said so
    assert checked.returncode == 0, checked.stderr
    assert f"{legacy.name}: skipped: format 1" in checked.stdout
    one = verify(dest, key_file, "--backup", legacy.name)
    assert one.returncode == 2, one.stderr
    assert "--allow-format-1" in error_line(one, "UsageError")
    refused = restore(legacy, f"file://{data}", key_file)
    assert refused.returncode == 2, refused.stderr
    assert (data / "ledger.txt").read_text() == "balance 100\n"

    allowed = restore(legacy, f"file://{data}", key_file, "--allow-format-1")
    assert allowed.returncode == 0, allowed.stderr
    assert "format-1 backup" in allowed.stderr  # a warning
    assert (data / "ledger.txt").read_text() == "balance 50\n"
    # Never pruned: nothing proves its time.
    done = agent("prune", "--dest", str(dest), "--key-file", str(key_file), "--keep-last", "1")
    assert done.returncode == 0, done.stderr
    assert legacy.is_dir()
    assert "format-1" in done.stderr
