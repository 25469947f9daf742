"""The encrypted stream format and the retention rules: pure, no servers."""

from __future__ import annotations

import datetime
import io
import os
import struct

import pytest

from rampart_backup.crypto import decrypt_stream, encrypt_stream, load_key
from rampart_backup.errors import Tampered, Truncated, UsageError, WrongKey
from rampart_backup.retention import Policy, to_delete, to_keep

KEY = bytes(range(32))
HEADER = 6 + 4 + 8 + 16


def sealed(plain: bytes, chunk_size: int = 64) -> bytes:
    out = io.BytesIO()
    encrypt_stream(
        iter([plain[i : i + 1000] for i in range(0, len(plain), 1000)] or [b""]),
        out,
        KEY,
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
    import base64

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
