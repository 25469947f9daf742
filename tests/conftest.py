"""Fixtures that start real processes on loopback and always stop them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ports import free_port
from tests.upstream import Upstream
from tests.waiting import async_wait_until as async_wait_until  # re-exported for the tests
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


class Sidecar:
    """A ``rampart-sidecar`` process with its own ports and settings file."""

    def __init__(self, tmp: Path, settings: dict[str, Any], upstream_url: str) -> None:
        # Both listeners on port 0: the kernel picks free ports and the sidecar writes
        # them to its --address-file. No port is chosen here, so none can be taken by
        # another process (or by the other listener) before the sidecar binds it.
        handle, name = tempfile.mkstemp(prefix="sidecar-", suffix=".yaml", dir=tmp)
        os.close(handle)
        self.config = Path(name)
        self.config.write_text(yaml.safe_dump(settings))
        self.log_path = self.config.with_suffix(".log")
        self.address_file = self.config.with_suffix(".address")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rampart_sidecar",
                "--config",
                str(self.config),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--upstream",
                upstream_url,
                "--address-file",
                str(self.address_file),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.port = self.admin_port = 0
        try:
            wait_until(self._alive, timeout=15)
        except AssertionError:
            self.stop()
            raise AssertionError(f"sidecar did not start:\n{self.logs()}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _bound(self) -> bool:
        """The ports the sidecar bound, once it has written them (--address-file)."""
        if not self.address_file.exists():
            return False
        addresses = json.loads(self.address_file.read_text())
        self.port = int(addresses["proxy"].rsplit(":", 1)[1])
        self.admin_port = int(addresses["admin"].rsplit(":", 1)[1])
        return True

    def _alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"sidecar exited with {self.proc.returncode}:\n{self.logs()}")
        if not self.port and not self._bound():
            return False
        try:
            with urllib.request.urlopen(self.admin_url + "/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample, 0 when absent."""
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric_name, _, label_text = series.partition("{")
            if metric_name != name:
                continue
            found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if found == wanted:
                return float(value)
        return 0.0

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class RedisServer:
    """A real ``redis-server`` on a loopback port, which tests may kill and restart."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self._tmp),
                # DEBUG SLEEP is how a test makes Redis slow; local connections only.
                "--enable-debug-command",
                "local",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, timeout=10)

    def answers(self, within: float = 0.5) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=within) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def command(self, *args: str) -> bytes:
        """One command over a raw socket, so tests need no client library of their own."""
        payload = f"*{len(args)}\r\n".encode()
        for arg in args:
            payload += f"${len(arg.encode())}\r\n{arg}\r\n".encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(payload)
            return sock.recv(1 << 20)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.kill()


class PostgresServer:
    """A real PostgreSQL cluster in a temporary directory, on a loopback port.

    PostgreSQL refuses to run as root: as root, the server runs as the
    ``postgres`` user (created by Debian's package) in a directory it owns.
    """

    def __init__(self) -> None:
        import glob
        import tempfile

        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not versions:
            raise RuntimeError("PostgreSQL is not installed: run scripts/install")
        self.bin = Path(versions[-1])
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rampart-pg-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.as_user: list[str] = []
        self.user = os.environ.get("USER", "postgres")
        if os.geteuid() == 0:
            import pwd

            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
            self.user = "postgres"
        data = self.dir / "data"
        subprocess.run(
            [
                *self.as_user,
                str(self.bin / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                self.user,
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        self.proc = subprocess.Popen(
            [
                *self.as_user,
                str(self.bin / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ready, timeout=30, interval=0.1)
        self.url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def ready(self) -> bool:
        return (
            subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            ).returncode
            == 0
        )

    def sql(self, statement: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.start()
    yield server
    server.close()


@pytest.fixture
def start_sidecar(tmp_path: Path) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def start(settings: dict[str, Any] | None = None, upstream_url: str = "") -> Sidecar:
        sidecar = Sidecar(tmp_path, settings or {}, upstream_url or "http://127.0.0.1:1")
        started.append(sidecar)
        return sidecar

    yield start
    for sidecar in started:
        sidecar.stop()
