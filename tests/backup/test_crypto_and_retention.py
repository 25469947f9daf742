"""The encrypted stream format, the key, the retention rules, and retention on
authenticated backups of a directory: no servers."""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import shutil
import struct

import pytest

from rampart_backup import store
from rampart_backup.crypto import (
    Identity,
    Keys,
    decrypt_stream,
    encrypt_stream,
    load_key,
    open_stream,
)
from rampart_backup.errors import Misplaced, Tampered, Truncated, UsageError, WrongKey
from rampart_backup.retention import Policy, to_delete, to_keep
from tests.backup.legacy import legacy_backup, legacy_stream

KEY = bytes(range(32))
IDENTITY = Identity(
    "postgresql",
    "postgresql://app:***@db:5432/shop",
    "20261123T020000Z-postgresql",
    "2026-11-23T02:00:00+00:00",
)
HEADER = 6 + 4 + 8 + 16 + 2 + len(IDENTITY.encode())


def sealed(plain: bytes, chunk_size: int = 64, identity: Identity = IDENTITY) -> bytes:
    out = io.BytesIO()
    encrypt_stream(
        iter([plain[i : i + 1000] for i in range(0, len(plain), 1000)] or [b""]),
        out,
        KEY,
        identity,
        chunk_size=chunk_size,
    )
    return out.getvalue()


def opened(data: bytes, key: bytes = KEY) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(data), key))


def chunk_offsets(data: bytes) -> list[int]:
    offsets, at = [], HEADER
    while at < len(data):
        offsets.append(at)
        (length,) = struct.unpack("!I", data[at : at + 4])
        at += 4 + length
    return offsets


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 10_000, 300_000])
def test_round_trip(size):
    plain = os.urandom(size // 2) + b"a" * (size - size // 2)
    assert opened(sealed(plain)) == plain


def test_nothing_in_the_clear():
    plain = b"SECRET-ROW-" * 1000
    assert b"SECRET" not in sealed(plain)


def test_wrong_key():
    with pytest.raises(WrongKey):
        opened(sealed(b"data"), key=bytes(32))


def test_the_header_names_the_backup_and_its_first_chunk_authenticates_it():
    data = sealed(b"rows" * 100)
    identity, blocks = open_stream(io.BytesIO(data), KEY)
    assert identity == IDENTITY
    assert b"".join(blocks) == b"rows" * 100
    # The header holds no key material: the check is derived, not an HMAC of the key itself.
    assert data[18:34] == Keys.derive(KEY).check
    assert len({Keys.derive(KEY).data, Keys.derive(KEY).manifest, KEY}) == 3
    # Another backup's name in the header: its first chunk no longer authenticates.
    renamed = data.replace(b"20261123T020000Z", b"20261124T020000Z")
    assert renamed != data
    with pytest.raises(Tampered, match="chunk 0"):
        open_stream(io.BytesIO(renamed), KEY)
    # A header spliced from another backup (same key, other name and time) onto these chunks.
    other = sealed(b"x", identity=Identity("path", "file:///d", "20260101T000000Z-path", "x"))
    other_header = other[: 6 + 4 + 8 + 16 + 2 + int.from_bytes(other[34:36], "big")]
    with pytest.raises(Tampered):
        opened(other_header + data[HEADER:])


def test_a_format_1_stream_still_decrypts_with_no_identity():
    plain = os.urandom(3000)
    identity, blocks = open_stream(io.BytesIO(legacy_stream(plain, KEY)), KEY)
    assert identity is None
    assert b"".join(blocks) == plain
    with pytest.raises(WrongKey):
        opened(legacy_stream(plain, KEY), key=os.urandom(32))


@pytest.mark.parametrize("where", ["header-nonce", "first-chunk", "middle-chunk", "last-chunk"])
def test_a_flipped_byte_is_tampering(where):
    data = bytearray(sealed(os.urandom(5000)))
    offsets = chunk_offsets(bytes(data))
    assert len(offsets) >= 3
    position = {
        "header-nonce": 12,
        "first-chunk": offsets[0] + 10,
        "middle-chunk": offsets[len(offsets) // 2] + 10,
        "last-chunk": len(data) - 1,
    }[where]
    data[position] ^= 0x01
    with pytest.raises(Tampered):
        opened(bytes(data))


def test_truncation_at_a_chunk_boundary_or_inside_one():
    data = sealed(os.urandom(5000))
    offsets = chunk_offsets(data)
    for cut in (offsets[-1], offsets[2], offsets[2] + 7, 10, HEADER + 2):
        with pytest.raises(Truncated):
            opened(data[:cut])


def test_reordered_chunks_are_refused():
    data = sealed(os.urandom(5000))
    offsets = chunk_offsets(data)
    first, second = data[offsets[0] : offsets[1]], data[offsets[1] : offsets[2]]
    swapped = data[: offsets[0]] + second + first + data[offsets[2] :]
    with pytest.raises(Tampered):
        opened(swapped)


def test_data_after_the_last_chunk_is_refused():
    with pytest.raises(Tampered):
        opened(sealed(b"x" * 500) + b"extra")


@pytest.mark.parametrize("encoding", ["raw", "hex", "base64"])
def test_key_formats(tmp_path, encoding):
    path = tmp_path / "key"
    path.write_bytes(
        {"raw": KEY, "hex": KEY.hex().encode() + b"\n", "base64": base64.b64encode(KEY)}[encoding]
    )
    assert load_key(path) == KEY


def test_bad_keys(tmp_path):
    (tmp_path / "short").write_text("abcd")
    with pytest.raises(UsageError, match="32 bytes"):
        load_key(tmp_path / "short")
    with pytest.raises(UsageError, match="cannot read"):
        load_key(tmp_path / "missing")


WEAK_KEYS = {
    # What a human writes instead of a key, each refused with its reason.
    "passphrase": (b"correct horse battery staple!!!!", "all printable characters"),
    "16-byte hex": (b"0123456789abcdef0123456789abcdef", "all printable characters"),
    "zeros": (bytes(32), "only 1 distinct byte value"),
    "zeros in hex": (b"00" * 32 + b"\n", "hex text has no letter"),
    "a number in hex": (b"1234567890" * 6 + b"1234", "hex text has no letter"),
    "few values": (bytes([1, 2, 3, 200]) * 8, "only 4 distinct byte values"),
    "a block twice": (bytes(range(200, 216)) * 2, "16-byte block repeated"),
    "a block twice in base64": (
        base64.b64encode(bytes(range(200, 216)) * 2),
        "16-byte block repeated (after base64 decoding)",
    ),
    "words in base64": (b"mysupersecretbackuppasswordthatisquitelongg=\n", "no uppercase"),
    "text in hex": (
        b"70617373776f72642070617373776f72642070617373776f7264212121212121",
        "printable",
    ),
}


@pytest.mark.parametrize("name", list(WEAK_KEYS))
def test_weak_keys_are_refused_with_the_reason(tmp_path, name):
    content, reason = WEAK_KEYS[name]
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="weak key") as refused:
        load_key(path)
    assert reason in str(refused.value)
    assert "openssl rand -hex 32" in str(refused.value)


def test_random_keys_as_the_docs_the_tests_and_a_secret_make_them_pass(tmp_path):
    path = tmp_path / "key"
    for _ in range(300):
        key = os.urandom(32)
        for content in (
            key,  # kubectl create secret --from-file of `openssl rand 32`
            key.hex().encode() + b"\n",  # openssl rand -hex 32, os.urandom(32).hex()
            base64.b64encode(key) + b"\n",  # openssl rand -base64 32
        ):
            path.write_bytes(content)
            assert load_key(path) == key


def at(day: int, hour: int = 2) -> datetime.datetime:
    return datetime.datetime(2026, 1, 1, hour, tzinfo=datetime.UTC) + datetime.timedelta(days=day)


# 120 days of nightly backups, plus a second one on each of the last three days.
HISTORY = [at(d) for d in range(120)] + [at(d, 14) for d in range(117, 120)]


def test_keep_last():
    assert to_keep(HISTORY, Policy(keep_last=4)) == set(sorted(HISTORY)[-4:])


def test_keep_daily_takes_the_newest_of_each_day():
    kept = to_keep(HISTORY, Policy(keep_daily=3))
    assert kept == {at(119, 14), at(118, 14), at(117, 14)}


def test_keep_weekly_and_monthly():
    weekly = to_keep(HISTORY, Policy(keep_weekly=2))
    assert len(weekly) == 2
    assert max(weekly) == at(119, 14)
    assert len({t.isocalendar()[:2] for t in weekly}) == 2
    monthly = to_keep(HISTORY, Policy(keep_monthly=4))
    assert {(t.year, t.month) for t in monthly} == {(2026, 1), (2026, 2), (2026, 3), (2026, 4)}
    assert at(30) in monthly  # 31 January: the newest of January


def test_rules_combine_and_the_rest_goes():
    policy = Policy(keep_last=2, keep_daily=7, keep_weekly=4, keep_monthly=3)
    kept = to_keep(HISTORY, policy)
    assert len(to_delete(HISTORY, policy)) == len(HISTORY) - len(kept)
    assert kept >= to_keep(HISTORY, Policy(keep_daily=7))


def test_never_deletes_the_only_backup_and_no_policy_keeps_all():
    assert to_keep([at(1)], Policy(keep_daily=0, keep_last=0)) == {at(1)}
    assert to_delete(HISTORY, Policy()) == []
    assert to_keep(HISTORY, Policy(keep_monthly=1)) == {at(119, 14)}


# Retention on real backups of a directory, made at chosen times.


def backup_at(monkeypatch, dest, source, when, key=KEY):
    monkeypatch.setattr(store, "_now", lambda: when)
    made, _ = store.run_backup(f"file://{source}", dest, key, Policy())
    return made


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "f").write_text("contents")
    return folder


def names(dest):
    return sorted(p.name for p in dest.iterdir())


def test_prune_keeps_and_reports_what_does_not_authenticate(monkeypatch, tmp_path, source):
    dest = tmp_path / "dest"
    made = [backup_at(monkeypatch, dest, source, at(day)) for day in range(4)]
    # The newest's manifest forged to look old; another's folder renamed to look newest.
    forged = json.loads((made[3].path / "manifest.json").read_text())
    forged["started"] = at(-400).isoformat()
    (made[3].path / "manifest.json").write_text(json.dumps(forged))
    made[0].path.rename(dest / "29990101T000000Z-path")
    # A backup made with another key, one from before authentication, a broken manifest.
    other = backup_at(monkeypatch, dest, source, at(10), key=os.urandom(32))
    legacy = legacy_backup(dest, b"old", KEY, at(-500))
    (dest / "20260601T000000Z-path").mkdir()
    (dest / "20260601T000000Z-path" / "manifest.json").write_text("{not json")

    pruned = store.prune(dest, Policy(keep_last=1), KEY)

    # Of the two backups that authenticate and name their folder, the newer stays.
    assert [b.name for b in pruned.deleted] == [made[1].name]
    reasons = {u.backup.name: u.reason for u in pruned.untrusted}
    assert set(reasons) == {
        made[3].name,
        "29990101T000000Z-path",
        other.name,
        legacy.name,
        "20260601T000000Z-path",
    }
    assert "does not authenticate" in reasons[made[3].name]
    assert f"is backup {made[0].name}'s" in reasons["29990101T000000Z-path"]
    assert "another key" in reasons[other.name]
    assert "format-1" in reasons[legacy.name]
    assert "not JSON" in reasons["20260601T000000Z-path"]
    assert made[1].name not in names(dest)
    assert len(names(dest)) == 6  # all the untrusted ones, and the newest trusted one


def test_each_source_is_a_series_of_its_own(monkeypatch, tmp_path, source):
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    mine = [backup_at(monkeypatch, dest, source, at(day)) for day in range(3)]
    other_source = tmp_path / "other"
    other_source.mkdir()
    (other_source / "g").write_text("another source, the same key")
    theirs = [backup_at(monkeypatch, elsewhere, other_source, at(day, 5)) for day in (7, 8)]
    for backup in theirs:  # authentic, newer, copied in: they must not push mine out
        shutil.copytree(backup.path, dest / backup.name)
    pruned = store.prune(dest, Policy(keep_last=2), KEY)
    # Counted together, theirs would have been the two newest and all of mine gone.
    assert [b.name for b in pruned.deleted] == [mine[0].name]
    assert names(dest) == sorted([mine[1].name, mine[2].name, *(b.name for b in theirs)])


def test_a_format_1_backup_is_used_only_when_allowed(tmp_path):
    dest = tmp_path / "dest"
    folder = legacy_backup(dest, b"legacy contents", KEY, at(1))
    (backup,) = store.list_backups(dest)
    with pytest.raises(UsageError, match="--allow-format-1"):
        store.verify(backup, KEY)
    assert store.verify(backup, KEY, allow_format_1=True) == len(b"legacy contents")
    # Even allowed, a format-1 manifest over a format-2 data file is refused.
    copy = backup_at(pytest.MonkeyPatch(), tmp_path / "new", tmp_path, at(2))
    shutil.copy(copy.path / "data.rbk", folder / "data.rbk")
    with pytest.raises(Misplaced):
        store.verify(backup, KEY, allow_format_1=True)
