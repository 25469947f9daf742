"""What scripts/run-sidecar tells a user to try shows what it says it shows.

The demo application and the sidecar as the script runs them: the settings
file is examples/sidecar.yaml itself, untouched.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from rampart_sidecar.demo import build_app
from tests.conftest import Sidecar, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = yaml.safe_load((ROOT / "examples" / "sidecar.yaml").read_text())


class DemoApp:
    """The demo application on a port of its own choosing (port 0), in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the demo application did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(build_app())
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self.runner = runner
        ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Sidecar]:
    app = DemoApp()
    sidecar = Sidecar(tmp_path, SETTINGS, app.url)
    try:
        yield sidecar
    finally:
        sidecar.stop()
        app.stop()


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            answer.read()
            return answer.status, dict(answer.headers), time.monotonic() - started
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, dict(error.headers), time.monotonic() - started


def metric(sidecar: Sidecar, name: str) -> float:
    with urllib.request.urlopen(sidecar.admin_url + "/metrics", timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def test_a_cache_miss_then_a_hit(demo: Sidecar) -> None:
    assert get(demo.url + "/")[1]["X-Rampart-Cache"] == "MISS"
    assert get(demo.url + "/")[1]["X-Rampart-Cache"] == "HIT"


def test_the_slow_route_waits_its_own_timeout_then_gives_up(demo: Sidecar) -> None:
    status, _, took = get(demo.url + "/slow?ms=3000")
    assert status == 200
    assert took >= 3
    status, headers, took = get(demo.url + "/slow?ms=6000")
    assert status == 504
    assert headers["X-Rampart-Reason"] == "request-timeout"
    assert took >= 4.5  # the route's 5s, not the default 2s (no upper bound: a busy host)


def test_failures_are_retried_and_never_cached(demo: Sidecar) -> None:
    before = metric(demo, "rampart_retries_total")
    status, headers, _ = get(demo.url + "/flaky?fail=2&key=demo")
    assert status == 200  # two 503s, then the second retry answered
    assert metric(demo, "rampart_retries_total") == before + 2
    assert headers.get("X-Rampart-Cache") == "MISS"
    assert get(demo.url + "/flaky?fail=2&key=demo")[1].get("X-Rampart-Cache") != "HIT"


def test_the_breaker_opens_then_closes(demo: Sidecar) -> None:
    reasons: list[Any] = []
    for _ in range(4):
        status, headers, _ = get(demo.url + "/flaky?p=1")
        reasons.append((status, headers.get("X-Rampart-Reason")))
    assert (503, "circuit-open") in reasons, reasons
    # After openFor (10s), a trial request goes through and closes it again.
    wait_until(lambda: get(demo.url + "/flaky?p=0")[0] == 200, timeout=20, interval=0.5)


def test_an_outage_gets_the_stale_answer(demo: Sidecar) -> None:
    assert get(demo.url + "/")[0] == 200  # cached for 10s
    assert get(demo.url + "/outage?seconds=60", method="POST")[0] == 200
    # Once the entry is past its 10s, the outage's 503 is replaced by the stale copy.
    wait_until(
        lambda: get(demo.url + "/")[1].get("X-Rampart-Cache") == "STALE", timeout=20, interval=0.5
    )
    status, headers, _ = get(demo.url + "/")
    assert status == 200
    assert int(headers["Age"]) >= 10
