"""Back up real PostgreSQL, Redis and a path with the CLI; destroy; restore; compare."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path

import pytest
import redis

from rampart_backup import store
from rampart_backup.crypto import load_key
from rampart_backup.retention import Policy
from tests.backup.agent import agent, backup

pytestmark = pytest.mark.integration

EXIT = {
    "usage": 2,
    "unreachable": 3,
    "wrong-key": 4,
    "tampered": 5,
    "truncated": 6,
    "restore-failed": 7,
}


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(os.urandom(32).hex())
    return path


def pg_checksum(postgres, database: str) -> tuple[str, str]:
    return (
        postgres.sql("select count(*) from orders", database),
        postgres.sql(
            "select md5(string_agg(id || ':' || item || ':' || amount, ',' "
            "order by id)) from orders",
            database,
        ),
    )


@pytest.fixture
def shop_db(postgres, request):
    database = f"shop_{request.node.name[-20:].lower().replace('[', '_').replace(']', '')}"
    database = "".join(c for c in database if c.isalnum() or c == "_")
    postgres.sql(f"drop database if exists {database}")
    postgres.sql(f"create database {database}")
    postgres.sql("create table orders (id serial primary key, item text, amount numeric)", database)
    postgres.sql(
        "insert into orders (item, amount) select 'item-' || g, g * 1.5 "
        "from generate_series(1, 5000) g",
        database,
    )
    return database


def test_postgres_round_trip(postgres, shop_db, tmp_path, key_file):
    url = postgres.url.rsplit("/", 1)[0] + f"/{shop_db}"
    before = pg_checksum(postgres, shop_db)
    made = backup(url, tmp_path / "dest", key_file)
    assert made["source"]["kind"] == "postgresql"
    postgres.sql("drop table orders", shop_db)
    result = agent(
        "restore",
        "--from",
        str(tmp_path / "dest" / made["backup"]),
        "--target",
        url,
        "--key-file",
        str(key_file),
    )
    assert result.returncode == 0, result.stderr
    assert pg_checksum(postgres, shop_db) == before == ("5000", before[1])
    listed = agent("list", "--dest", str(tmp_path / "dest"))
    assert [json.loads(line)["backup"] for line in listed.stdout.splitlines()] == [made["backup"]]
    verified = agent("verify", "--dest", str(tmp_path / "dest"), "--key-file", str(key_file))
    assert verified.returncode == 0
    assert ": ok," in verified.stdout


def test_a_bad_backup_never_touches_the_target(postgres, shop_db, tmp_path, key_file):
    url = postgres.url.rsplit("/", 1)[0] + f"/{shop_db}"
    made = backup(url, tmp_path / "dest", key_file)
    data = tmp_path / "dest" / made["backup"] / "data.rbk"
    postgres.sql("delete from orders where id > 10", shop_db)  # the target as it is now
    current = pg_checksum(postgres, shop_db)

    original = data.read_bytes()
    cases = {
        "tampered": original[:200] + bytes([original[200] ^ 1]) + original[201:],
        "truncated": original[: len(original) - 40],
    }
    messages = set()
    for case, content in cases.items():
        data.write_bytes(content)
        result = agent(
            "restore", "--from", str(data.parent), "--target", url, "--key-file", str(key_file)
        )
        assert result.returncode == EXIT[case], (case, result.stderr)
        messages.add(result.stderr)
        assert pg_checksum(postgres, shop_db) == current  # nothing partial written
    data.write_bytes(original)
    other_key = tmp_path / "other"
    other_key.write_text(os.urandom(32).hex())
    wrong = agent(
        "restore", "--from", str(data.parent), "--target", url, "--key-file", str(other_key)
    )
    assert wrong.returncode == EXIT["wrong-key"]
    messages.add(wrong.stderr)
    assert len(messages) == 3  # each failure says something of its own
    assert pg_checksum(postgres, shop_db) == current


def test_unreachable_source_leaves_nothing_and_says_so(tmp_path, key_file):
    dest = tmp_path / "dest"
    result = agent(
        "run",
        "--dest",
        str(dest),
        "--key-file",
        str(key_file),
        "--metrics-file",
        str(tmp_path / "m.prom"),
        env={"RAMPART_BACKUP_SOURCE": "postgresql://someone:hunter2@127.0.0.1:1/none"},
    )
    assert result.returncode == EXIT["unreachable"]
    assert "hunter2" not in result.stderr
    assert list(dest.iterdir()) == []  # no half-written backup
    metrics = (tmp_path / "m.prom").read_text()
    assert 'rampart_backup_last_run_success{backup="backup",kind="postgresql"} 0.0' in metrics


def redis_snapshot(client: redis.Redis) -> dict[bytes, object]:
    """Every key's type and value, compared logically (a set's DUMP order may differ)."""
    readers = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda k: client.lrange(k, 0, -1),
        b"set": lambda k: sorted(client.smembers(k)),
        b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
    }
    return {key: (client.type(key), readers[client.type(key)](key)) for key in client.scan_iter()}


def test_redis_round_trip(redis_server, tmp_path, key_file):
    client = redis.Redis.from_url(redis_server.url)
    client.set("plain", b"\x00binary\xff")
    client.set("expiring", "soon", ex=3600)
    client.hset("hash", mapping={"a": "1", "b": "2"})
    client.rpush("list", "x", "y", "z")
    client.sadd("set", "p", "q")
    client.zadd("zset", {"m": 1.5, "n": 2.5})
    for i in range(2000):
        client.set(f"bulk:{i}", f"value-{i}")
    before = redis_snapshot(client)
    made = backup(redis_server.url, tmp_path / "dest", key_file)
    client.flushall()
    client.set("stray", "not in the backup")
    result = agent(
        "restore",
        "--from",
        str(tmp_path / "dest" / made["backup"]),
        "--key-file",
        str(key_file),
        env={"RAMPART_BACKUP_TARGET": redis_server.url},
    )
    assert result.returncode == 0, result.stderr
    assert redis_snapshot(client) == before
    assert len(before) == 2006
    assert 3500 < client.ttl("expiring") <= 3600
    assert client.hgetall("hash") == {b"a": b"1", b"b": b"2"}


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_path_round_trip(tmp_path, key_file):
    data = tmp_path / "data"
    (data / "nested" / "deeper").mkdir(parents=True)
    (data / "a.txt").write_text("alpha")
    (data / "nested" / "b.bin").write_bytes(os.urandom(300_000))
    (data / "nested" / "deeper" / "c").write_bytes(b"")
    data.chmod(0o750)  # the folder's own mode survives the swap
    before = tree(data)
    made = backup(f"file://{data}", tmp_path / "dest", key_file)
    (data / "a.txt").write_text("changed")
    (data / "new").write_text("not in the backup")
    result = agent(
        "restore",
        "--from",
        str(tmp_path / "dest" / made["backup"]),
        "--target",
        f"file://{data}",
        "--key-file",
        str(key_file),
    )
    assert result.returncode == 0, result.stderr
    assert tree(data) == before
    assert data.stat().st_mode & 0o7777 == 0o750
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data")]


def test_retention_applies_after_each_run(tmp_path, key_file, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    dest = tmp_path / "dest"
    key = load_key(key_file)
    for day in (1, 2, 3):  # three earlier nights' backups, made as a run makes them
        night = datetime.datetime(2026, 1, day, 2, tzinfo=datetime.UTC)
        monkeypatch.setattr(store, "_now", lambda night=night: night)
        store.run_backup(f"file://{data}", dest, key, Policy())
    made = backup(f"file://{data}", dest, key_file, "--keep-last", "2")
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["20260103T020000Z-path", made["backup"]]


def test_manifest_says_what_was_backed_up_without_credentials(
    postgres, shop_db, tmp_path, key_file
):
    url = postgres.url.replace("postgres@", "postgres:pw-secret@").rsplit("/", 1)[0]
    made = backup(url + f"/{shop_db}", tmp_path / "dest", key_file)
    manifest = json.loads((tmp_path / "dest" / made["backup"] / "manifest.json").read_text())
    assert manifest["source"]["url"].endswith(f"@127.0.0.1:{postgres.port}/{shop_db}")
    assert "pw-secret" not in json.dumps(manifest)
    assert manifest["size"] == (tmp_path / "dest" / made["backup"] / "data.rbk").stat().st_size
    assert manifest["format"] == 2
    assert manifest["name"] == made["backup"]
    assert len(manifest["sha256"]) == 64
    assert len(manifest["keyCheck"]) == 32
    assert len(manifest["mac"]) == 64
    assert manifest["started"] <= manifest["finished"]


def test_credentials_in_a_query_never_reach_the_manifest_or_the_output(tmp_path, key_file):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    made = backup(f"file://{data}?password=s3cret-q&mode=ro", tmp_path / "dest", key_file)
    manifest = (tmp_path / "dest" / made["backup"] / "manifest.json").read_text()
    assert "s3cret-q" not in manifest
    assert "password=***" in manifest
    assert "s3cret-q" not in json.dumps(made)  # what run printed
