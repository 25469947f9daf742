"""Restore drills, run with the CLI against real servers: production, and a throwaway one.

Production is the session's PostgreSQL (or a Redis, or a directory); a drill
restores into a second server started for this module, never into production,
which the tests compare before and after. Metrics go to a textfile or to a real
Pushgateway, read back over HTTP.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from rampart_backup.crypto import load_key, manifest_mac
from rampart_backup.errors import RestoreFailed
from rampart_backup.sources.filesystem import PathSource
from tests.backup.agent import agent, backup
from tests.conftest import PostgresServer, RedisServer
from tests.monitoring import Pushgateway
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ORDERS = 100
CUSTOMERS = 3


def drill(
    dest: Path, key_file: Path, target: str, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return agent(
        "drill",
        "--dest",
        str(dest),
        "--key-file",
        str(key_file),
        *extra,
        env={"RAMPART_BACKUP_TARGET": target, **(env or {})},
    )


def one_line_error(done: subprocess.CompletedProcess[str], kind: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"rampart-backup: {kind}: "), done.stderr
    return lines[0]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(os.urandom(32).hex())
    return path


@pytest.fixture(scope="module")
def drill_server() -> Iterator[PostgresServer]:
    """The throwaway server drills restore into: never the session's `postgres`."""
    server = PostgresServer()
    yield server
    server.stop()


def database_name(request: pytest.FixtureRequest, prefix: str) -> str:
    name = f"{prefix}_{request.node.name[-30:].lower()}"
    return "".join(c if c.isalnum() else "_" for c in name)


def fresh_database(server: PostgresServer, name: str) -> str:
    server.sql(f"drop database if exists {name}")
    server.sql(f"create database {name}")
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def shop(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A production database with two tables; returns its URL."""
    name = database_name(request, "shop")
    url = fresh_database(postgres, name)
    postgres.sql("create table customers (id int primary key, name text)", name)
    postgres.sql("insert into customers values (1, 'ada'), (2, 'bob'), (3, 'cy')", name)
    postgres.sql("create table orders (id serial primary key, item text, amount numeric)", name)
    postgres.sql(
        "insert into orders (item, amount) "
        "select 'item-' || g, g * 1.5 from generate_series(1, 100) g",  # ORDERS
        name,
    )
    return url


@pytest.fixture
def target(drill_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """An empty database on the drill server, as a drill Job's server starts."""
    return fresh_database(drill_server, database_name(request, "drill"))


def contents(server: PostgresServer, url: str) -> tuple[str, ...]:
    database = url.rsplit("/", 1)[1]
    return (
        server.sql("select count(*) from orders", database),
        server.sql(
            "select md5(string_agg(id || ':' || item || ':' || amount, ',' order by id)) "
            "from orders",
            database,
        ),
        server.sql("select string_agg(id || name, ',' order by id) from customers", database),
    )


def tables(server: PostgresServer, url: str) -> int:
    return int(
        server.sql(
            "select count(*) from pg_tables where schemaname = 'public'", url.rsplit("/", 1)[1]
        )
    )


def textfile(path: Path) -> dict[str, float]:
    """A metrics textfile as {'name{labels}': value}."""
    samples = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def pushed_groups(pushgateway: Pushgateway) -> list[dict[str, Any]]:
    with urllib.request.urlopen(pushgateway.url + "/api/v1/metrics", timeout=5) as answer:
        groups: list[dict[str, Any]] = json.load(answer)["data"]
        return groups


def pushed(pushgateway: Pushgateway, job: str, **grouping: str) -> dict[str, dict[str, Any]]:
    """One push group's series: metric name → {'labels': ..., 'value': float}."""
    wanted = {"job": job, **grouping}
    (group,) = [g for g in pushed_groups(pushgateway) if g["labels"] == wanted]
    series = {}
    for name, family in group.items():
        if name.startswith("rampart_"):
            (sample,) = family["metrics"]
            series[name] = {"labels": sample["labels"], "value": float(sample["value"])}
    return series


def test_a_postgres_drill_restores_into_its_own_server_and_never_touches_production(
    postgres: PostgresServer,
    drill_server: PostgresServer,
    shop: str,
    target: str,
    tmp_path: Path,
    key_file: Path,
) -> None:
    dest = tmp_path / "dest"
    made = backup(shop, dest, key_file)
    backed_up = contents(postgres, shop)
    version = postgres.sql("show server_version").split()[0]
    assert made["source"]["serverVersion"] == version  # recorded for the drill to compare
    # Production moves on after the backup: a drill that restored into it would undo this.
    postgres.sql("insert into orders (item, amount) values ('after', 1)", shop.rsplit("/", 1)[1])
    production = contents(postgres, shop)
    assert production != backed_up

    started = time.time()
    done = drill(
        dest,
        key_file,
        target,
        "--check-sql",
        "SELECT count(*) = 100 FROM orders",
        "--check-sql",
        "SELECT name FROM customers WHERE id = 1",  # one value, not false: passes
        "--rto-seconds",
        "600",
        "--rpo-seconds",
        "3600",
        "--metrics-file",
        str(tmp_path / "drill.prom"),
        # The Job's environment might hold production's URL: the drill must not use it.
        env={"RAMPART_BACKUP_SOURCE": shop},
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backup"] == made["backup"]
    assert report["kind"] == "postgresql"
    assert report["inventory"] == {"tables": 2, "rows": ORDERS + CUSTOMERS}
    assert report["checks"] == [
        "sql: SELECT count(*) = 100 FROM orders",
        "sql: SELECT name FROM customers WHERE id = 1",
    ]
    assert report["restoredBytes"] == made["plainSize"] > 0
    assert 0 < report["restoreSeconds"] < time.time() - started
    assert 0 <= report["backupAgeSeconds"] < 600
    assert report["rtoExceeded"] is False
    assert report["rpoExceeded"] is False

    assert contents(drill_server, target) == backed_up  # the drill server has the backup
    assert contents(postgres, shop) == production  # and production is as it was

    samples = textfile(tmp_path / "drill.prom")
    labels = '{backup="backup",kind="postgresql"}'
    assert samples[f"rampart_restore_drill_last_run_success{labels}"] == 1
    assert samples[f"rampart_restore_drill_restored_bytes{labels}"] == made["plainSize"]
    assert samples[f"rampart_restore_drill_rto_target_seconds{labels}"] == 600
    assert samples[f"rampart_restore_drill_rpo_target_seconds{labels}"] == 3600
    assert samples[f"rampart_restore_drill_restore_duration_seconds{labels}"] == pytest.approx(
        report["restoreSeconds"], abs=0.001
    )
    assert samples[f"rampart_restore_drill_backup_age_seconds{labels}"] == pytest.approx(
        report["backupAgeSeconds"], abs=0.001
    )
    assert (
        started
        <= samples[f"rampart_restore_drill_last_success_timestamp_seconds{labels}"]
        <= time.time()
    )


def test_the_metrics_reach_a_pushgateway_in_their_own_group_and_a_failure_is_pushed(
    shop: str, target: str, drill_server: PostgresServer, tmp_path: Path, key_file: Path
) -> None:
    pushgateway = Pushgateway(tmp_path)
    try:
        dest = tmp_path / "dest"
        routing = ["--label", "namespace=shop", "--label", "hardenedservice=checkout"]
        name = "checkout-drill-db"
        made = backup(shop, dest, key_file, "--pushgateway", pushgateway.url, "--name", name)
        metrics = ["--pushgateway", pushgateway.url, "--name", name, *routing]
        done = drill(dest, key_file, target, *metrics, "--rto-seconds", "0.001")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rtoExceeded"] is True  # reported, not a failure

        group = {"backup": name, "namespace": "shop", "hardenedservice": "checkout"}
        series = pushed(pushgateway, "rampart-restore-drill", **group)
        assert set(series) == {
            "rampart_restore_drill_last_run_success",
            "rampart_restore_drill_last_success_timestamp_seconds",
            "rampart_restore_drill_restore_duration_seconds",
            "rampart_restore_drill_backup_age_seconds",
            "rampart_restore_drill_restored_bytes",
            "rampart_restore_drill_rto_target_seconds",
        }
        for sample in series.values():
            assert sample["labels"] == {
                "job": "rampart-restore-drill",
                "instance": "",  # the Pushgateway's own, for honor_labels
                "kind": "postgresql",
                **group,
            }
        assert series["rampart_restore_drill_last_run_success"]["value"] == 1
        assert series["rampart_restore_drill_restored_bytes"]["value"] == made["plainSize"]
        assert series["rampart_restore_drill_rto_target_seconds"]["value"] == 0.001
        last_success = series["rampart_restore_drill_last_success_timestamp_seconds"]["value"]
        # The backup run's own group is apart and intact: same name, another job.
        run_series = pushed(pushgateway, "rampart-backup", backup=name)
        assert run_series["rampart_backup_last_run_success"]["value"] == 1

        # A byte flipped in the backup: the drill fails, and says so where alerts look.
        data = dest / made["backup"] / "data.rbk"
        original = data.read_bytes()
        data.write_bytes(original[:300] + bytes([original[300] ^ 1]) + original[301:])
        fresh = fresh_database(drill_server, "drill_after_flip")
        failed = drill(dest, key_file, fresh, *metrics)
        assert failed.returncode == 5, failed.stderr
        one_line_error(failed, "Tampered")
        assert tables(drill_server, fresh) == 0  # nothing restored
        series = pushed(pushgateway, "rampart-restore-drill", **group)
        assert series["rampart_restore_drill_last_run_success"]["value"] == 0
        # What the failure did not measure stays as the last success left it.
        assert (
            series["rampart_restore_drill_last_success_timestamp_seconds"]["value"] == last_success
        )
        assert series["rampart_restore_drill_backup_age_seconds"]["value"] > 0
        assert pushed(pushgateway, "rampart-backup", backup=name) == run_series
    finally:
        pushgateway.stop()


def test_a_damaged_backup_or_the_wrong_key_fails_the_drill_with_its_own_status(
    drill_server: PostgresServer, shop: str, target: str, tmp_path: Path, key_file: Path
) -> None:
    dest = tmp_path / "dest"
    made = backup(shop, dest, key_file)
    data = dest / made["backup"] / "data.rbk"
    original = data.read_bytes()
    other_key = tmp_path / "other-key"
    other_key.write_text(os.urandom(32).hex())
    cases = [
        ("tampered", 5, "Tampered", original[:-10] + bytes([original[-10] ^ 1]) + original[-9:]),
        ("truncated", 6, "Truncated", original[: len(original) - 40]),
        ("wrong key", 4, "WrongKey", original),
    ]
    metrics = tmp_path / "drill.prom"
    for case, status, error, content in cases:
        data.write_bytes(content)
        key = other_key if case == "wrong key" else key_file
        done = drill(dest, key, target, "--metrics-file", str(metrics))
        assert done.returncode == status, (case, done.stderr)
        one_line_error(done, error)
        assert done.stdout == ""
        assert tables(drill_server, target) == 0, case  # verified first: nothing restored
        samples = textfile(metrics)
        labels = '{backup="backup",kind="postgresql"}'
        assert samples[f"rampart_restore_drill_last_run_success{labels}"] == 0, case
        # The backup's age, from its manifest, only when the manifest authenticates.
        aged = f"rampart_restore_drill_backup_age_seconds{labels}" in samples
        assert aged == (case != "wrong key"), case
        assert f"rampart_restore_drill_restore_duration_seconds{labels}" not in samples
        assert f"rampart_restore_drill_last_success_timestamp_seconds{labels}" not in samples


def test_a_backup_of_an_empty_database_fails_the_drill(
    postgres: PostgresServer, target: str, tmp_path: Path, key_file: Path
) -> None:
    empty = fresh_database(postgres, "drill_empty_production")
    backup(empty, tmp_path / "dest", key_file)
    done = drill(tmp_path / "dest", key_file, target)
    assert done.returncode == 8, done.stderr
    line = one_line_error(done, "DrillFailed")
    assert line.endswith("the restored PostgreSQL database is empty: no tables")


def test_a_failing_sql_check_fails_the_drill_and_names_the_check(
    shop: str, drill_server: PostgresServer, tmp_path: Path, key_file: Path
) -> None:
    dest = tmp_path / "dest"
    backup(shop, dest, key_file)
    questions = {
        "SELECT count(*) > 100 FROM orders": "it answered f",
        "SELECT count(*) FROM orders WHERE item = 'nothing'": "it answered 0",
        "SELECT total FROM invoices": 'relation "invoices" does not exist',
    }
    for number, (sql, why) in enumerate(questions.items()):
        fresh = fresh_database(drill_server, f"drill_sql_check_{number}")
        done = drill(dest, key_file, fresh, "--check-sql", "SELECT true", "--check-sql", sql)
        assert done.returncode == 8, (sql, done.stderr)
        line = one_line_error(done, "DrillFailed")
        assert f'check "sql: {sql}" failed: ' in line
        assert why in line
        assert why in line


def test_a_failing_command_check_fails_the_drill_without_showing_the_password(
    drill_server: PostgresServer, shop: str, tmp_path: Path, key_file: Path
) -> None:
    dest = tmp_path / "dest"
    backup(shop, dest, key_file)
    # The drill server trusts local connections, so any password is accepted.
    target = fresh_database(drill_server, "drill_command_check")
    with_password = target.replace("@", ":pw-s3cret@", 1)
    passing = '[ -n "$RAMPART_DRILL_TARGET" ] && [ -z "$RAMPART_BACKUP_SOURCE" ]'
    failing = 'echo "checked $RAMPART_DRILL_TARGET" >&2; echo "no invoices" >&2; exit 3'
    done = drill(
        dest,
        key_file,
        with_password,
        "--check-command",
        passing,
        "--check-command",
        failing,
        env={"RAMPART_BACKUP_SOURCE": shop},
    )
    assert done.returncode == 8, done.stderr
    line = one_line_error(done, "DrillFailed")
    assert f'check "command: {failing}" exited with 3: ' in line
    assert "no invoices" in line
    assert "checked postgresql://postgres:***@" in line
    assert "pw-s3cret" not in done.stderr

    ok = drill(dest, key_file, with_password, "--check-command", passing)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["checks"] == [f"command: {passing}"]


def test_no_backup_fails_the_drill_under_the_targets_kind(
    target: str, tmp_path: Path, key_file: Path
) -> None:
    dest = tmp_path / "empty"
    dest.mkdir()
    (dest / ".incomplete-abc").mkdir()  # a run that never finished is no backup
    done = drill(dest, key_file, target, "--metrics-file", str(tmp_path / "m.prom"))
    assert done.returncode == 9, done.stderr
    assert one_line_error(done, "NoBackup").endswith(f"no backup in {dest} to drill")
    samples = textfile(tmp_path / "m.prom")
    assert samples == {
        'rampart_restore_drill_last_run_success{backup="backup",kind="postgresql"}': 0
    }


def test_an_unreachable_target_is_waited_for_then_reported_without_its_password(
    shop: str, tmp_path: Path, key_file: Path
) -> None:
    dest = tmp_path / "dest"
    backup(shop, dest, key_file)
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        url = f"postgresql://drill:hunter2@127.0.0.1:{port}/shop"
        started = time.monotonic()
        done = drill(dest, key_file, url, "--wait-seconds", "2")
        waited = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    line = one_line_error(done, "SourceUnreachable")
    assert f"postgresql://drill:***@127.0.0.1:{port}/shop did not accept connections" in line
    assert "hunter2" not in done.stderr
    assert 2 <= waited < 60


def test_a_server_of_another_major_version_is_refused_and_a_manifest_without_one_drills(
    drill_server: PostgresServer, shop: str, tmp_path: Path, key_file: Path
) -> None:
    dest = tmp_path / "dest"
    made = backup(shop, dest, key_file)
    manifest_file = dest / made["backup"] / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    running = drill_server.sql("show server_version").split()[0]
    older = f"{int(running.split('.')[0]) - 1}.4"
    key = load_key(key_file)
    # The manifest says the backup came from older; signed with the key, as a run would.
    manifest["source"]["serverVersion"] = older
    manifest["mac"] = manifest_mac(manifest, key)
    manifest_file.write_text(json.dumps(manifest))
    first = fresh_database(drill_server, "drill_version_other")
    done = drill(dest, key_file, first)
    assert done.returncode == 8, done.stderr
    assert one_line_error(done, "DrillFailed").endswith(
        f"backup of PostgreSQL {older} cannot be drilled on {running}: "
        "use a drill image of the same major version"
    )
    assert tables(drill_server, first) == 0

    # A manifest with no version recorded: nothing to compare, it drills.
    del manifest["source"]["serverVersion"]
    manifest["mac"] = manifest_mac(manifest, key)
    manifest_file.write_text(json.dumps(manifest))
    second = fresh_database(drill_server, "drill_version_unknown")
    done = drill(dest, key_file, second)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["inventory"] == {"tables": 2, "rows": ORDERS + CUSTOMERS}


def test_the_newest_authenticated_backup_is_the_one_drilled_and_must_be_its_own(
    postgres: PostgresServer,
    drill_server: PostgresServer,
    shop: str,
    tmp_path: Path,
    key_file: Path,
) -> None:
    dest = tmp_path / "dest"
    older = backup(shop, dest, key_file)
    postgres.sql("insert into customers values (4, 'dee')", shop.rsplit("/", 1)[1])
    started = datetime.datetime.fromisoformat(older["started"])
    second_later = started + datetime.timedelta(seconds=1)  # a name of its own for the next
    wait_until(lambda: datetime.datetime.now(datetime.UTC) >= second_later, 5, 0.05)
    newer = backup(shop, dest, key_file)
    # A copy of the older backup that claims to be the newest: renamed, its time edited.
    forged = dest / "29990101T000000Z-postgresql"  # sorted last by name and date
    shutil.copytree(dest / older["backup"], forged)
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["started"] = "2999-01-01T00:00:00+00:00"
    manifest["name"] = forged.name
    (forged / "manifest.json").write_text(json.dumps(manifest))

    target = fresh_database(drill_server, "drill_newest")
    done = drill(dest, key_file, target)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["backup"] == newer["backup"] != older["backup"]
    assert report["inventory"]["rows"] == ORDERS + CUSTOMERS + 1
    (untrusted,) = report["untrusted"]
    assert untrusted["backup"] == forged.name
    assert "does not authenticate" in untrusted["reason"]

    # The older data file swapped into the newest backup: the drill refuses it.
    shutil.copy(dest / older["backup"] / "data.rbk", dest / newer["backup"] / "data.rbk")
    target = fresh_database(drill_server, "drill_newest_swapped")
    done = drill(dest, key_file, target, "--metrics-file", str(tmp_path / "m.prom"))
    assert done.returncode == 10, done.stderr
    line = one_line_error(done, "Misplaced")
    assert f"data.rbk in {newer['backup']} belongs to backup {older['backup']}" in line
    assert tables(drill_server, target) == 0
    samples = textfile(tmp_path / "m.prom")
    assert samples['rampart_restore_drill_last_run_success{backup="backup",kind="postgresql"}'] == 0


def redis_snapshot(client: redis.Redis) -> dict[bytes, Any]:
    return {key: client.dump(key) for key in sorted(client.scan_iter())}


def test_a_redis_drill_restores_into_its_own_server(tmp_path: Path, key_file: Path) -> None:
    (tmp_path / "production").mkdir()
    (tmp_path / "drill").mkdir()
    production = RedisServer(tmp_path / "production")
    throwaway = RedisServer(tmp_path / "drill")
    try:
        source = redis.Redis.from_url(production.url)
        source.set("plain", "value")
        source.hset("hash", mapping={"a": "1"})
        source.rpush("list", "x", "y")
        for i in range(50):
            source.set(f"bulk:{i}", i)
        dest = tmp_path / "dest"
        made = backup(production.url, dest, key_file)
        version = source.info("server")["redis_version"]
        assert made["source"]["serverVersion"] == version
        backed_up = redis_snapshot(source)
        source.set("after", "the backup")
        before = redis_snapshot(source)

        check = f'[ "$RAMPART_DRILL_TARGET" = "{throwaway.url}" ]'
        done = drill(
            dest,
            key_file,
            throwaway.url,
            "--check-command",
            check,
            "--metrics-file",
            str(tmp_path / "m.prom"),
            env={"RAMPART_BACKUP_SOURCE": production.url},
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["kind"] == "redis"
        assert report["inventory"] == {"keys": 53}
        assert report["checks"] == [f"command: {check}"]
        assert redis_snapshot(redis.Redis.from_url(throwaway.url)) == backed_up
        assert redis_snapshot(source) == before  # production untouched
        samples = textfile(tmp_path / "m.prom")
        assert samples['rampart_restore_drill_last_run_success{backup="backup",kind="redis"}'] == 1

        # SQL checks need a PostgreSQL target; a Redis backup needs a Redis target.
        sql = drill(dest, key_file, throwaway.url, "--check-sql", "SELECT 1")
        assert sql.returncode == 2, sql.stderr
        assert "--check-sql needs a PostgreSQL target" in one_line_error(sql, "UsageError")
        wrong_kind = drill(dest, key_file, "postgresql://nobody@127.0.0.1:1/x")
        assert wrong_kind.returncode == 2, wrong_kind.stderr
        one_line_error(wrong_kind, "UsageError")
    finally:
        production.kill()
        throwaway.kill()


def test_an_empty_redis_backup_fails_the_drill(redis_server: RedisServer, tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(os.urandom(32).hex())
    backup(redis_server.url, tmp_path / "dest", key_file)
    done = drill(tmp_path / "dest", key_file, redis_server.url)
    assert done.returncode == 8, done.stderr
    assert one_line_error(done, "DrillFailed").endswith(
        "the restored Redis database is empty: no keys"
    )


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_path_drill_restores_into_an_empty_directory(tmp_path: Path, key_file: Path) -> None:
    data = tmp_path / "data"
    (data / "nested").mkdir(parents=True)
    (data / "index.json").write_text('{"pages": 2}')
    (data / "nested" / "page.bin").write_bytes(os.urandom(50_000))
    (data / "nested" / "empty").write_bytes(b"")
    made = backup(f"file://{data}", tmp_path / "dest", key_file)
    assert "serverVersion" not in made["source"]  # no server, no version
    before = tree(data)
    # Where a drill Job restores: an empty directory (its emptyDir's mount point).
    restored = tmp_path / "drill" / "restore"
    restored.mkdir(parents=True)
    check = 'test -s "${RAMPART_DRILL_TARGET#file://}/index.json"'
    done = drill(tmp_path / "dest", key_file, f"file://{restored}", "--check-command", check)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "path"
    assert report["inventory"] == {"files": 3, "bytes": len('{"pages": 2}') + 50_000}
    assert report["restoredBytes"] == made["plainSize"]
    assert tree(restored) == before == tree(data)
    assert [p.name for p in (tmp_path / "drill").iterdir()] == ["restore"]  # swapped nothing

    # A directory backed up empty restores nothing: the drill says so.
    (tmp_path / "void").mkdir()
    backup(f"file://{tmp_path / 'void'}", tmp_path / "void-dest", key_file)
    empty = drill(tmp_path / "void-dest", key_file, f"file://{tmp_path / 'void-restore'}")
    assert empty.returncode == 8, empty.stderr
    assert one_line_error(empty, "DrillFailed").endswith(
        "the restored directory is empty: no files"
    )


def test_a_label_the_agent_owns_is_refused_before_any_work(tmp_path: Path, key_file: Path) -> None:
    for bad in ("kind=x", "job=x", "9lives=x", "novalue"):
        done = drill(tmp_path, key_file, "redis://127.0.0.1:1/0", "--label", bad)
        assert done.returncode == 2, (bad, done.stderr)
        assert "--label" in done.stderr


def test_a_failed_restore_into_an_empty_directory_leaves_it_empty(tmp_path: Path) -> None:
    archive = tmp_path / "plain.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (("good.txt", b"fine"), ("../escape.txt", b"outside")):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    restored = tmp_path / "restore"
    restored.mkdir()
    with pytest.raises(RestoreFailed):
        PathSource(f"file://{restored}").restore(str(archive))
    assert list(restored.iterdir()) == []  # nothing of a failed restore is kept
    assert not (tmp_path / "escape.txt").exists()


def test_grants_to_roles_only_production_has_do_not_fail_the_drill(
    postgres: PostgresServer, shop: str, target: str, tmp_path: Path, key_file: Path
) -> None:
    # Real databases grant to application roles; the drill's server has none of them.
    role = f"reader_{os.getpid()}"
    postgres.sql(
        f"do $$ begin create role {role}; exception when duplicate_object then null; end $$"
    )
    postgres.sql(f"grant select on orders to {role}", shop.rsplit("/", 1)[1])
    dest = tmp_path / "dest"
    backup(shop, dest, key_file)
    done = drill(dest, key_file, target)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["inventory"]["tables"] == 2
