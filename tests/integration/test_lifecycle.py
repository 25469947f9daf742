"""Start-up, admin endpoints, graceful shutdown, configuration errors and logs."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys

import aiohttp
import pytest

from tests.conftest import async_wait_until, free_port

pytestmark = pytest.mark.integration


async def test_sigterm_lets_requests_in_flight_finish(start_sidecar, upstream):
    sidecar = start_sidecar({"shutdown": {"drainTimeout": "10s"}}, upstream.url)
    async with aiohttp.ClientSession() as client:

        async def slow() -> tuple[int, str]:
            async with client.get(sidecar.url + "/delay?ms=1000") as r:
                return r.status, await r.text()

        in_flight = [asyncio.create_task(slow()) for _ in range(10)]
        await async_wait_until(lambda: upstream.in_progress == 10, timeout=5)
        sidecar.signal(signal.SIGTERM)

        # Not ready any more, while the admin listener still answers.
        async def not_ready() -> bool:
            async with client.get(sidecar.admin_url + "/readyz") as r:
                return r.status == 503 and (await r.json())["reason"] == "draining"

        await async_wait_until(not_ready, timeout=3)
        # New connections are refused while the old requests drain.
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as fresh, fresh.get(sidecar.url + "/echo"):
                pass
        results = await asyncio.gather(*in_flight)
    assert results == [(200, "late\n")] * 10
    assert await asyncio.to_thread(sidecar.proc.wait, 10) == 0
    # It stopped when the last request was answered, not when the drain timeout ran out.
    assert "drain timeout reached" not in sidecar.logs()


async def test_drain_timeout_bounds_shutdown(start_sidecar, upstream):
    sidecar = start_sidecar({"shutdown": {"drainTimeout": "300ms"}}, upstream.url)
    async with aiohttp.ClientSession() as client:
        hanging = asyncio.create_task(client.get(sidecar.url + "/delay?ms=30000"))
        await async_wait_until(lambda: upstream.in_progress == 1, timeout=5)
        sidecar.signal(signal.SIGTERM)
        code = await asyncio.to_thread(sidecar.proc.wait, 5)
        hanging.cancel()
        await asyncio.gather(hanging, return_exceptions=True)
    assert code == 0
    assert "drain timeout reached" in sidecar.logs()


async def test_readiness_follows_the_upstream(start_sidecar):
    port = free_port()
    sidecar = start_sidecar({}, f"http://127.0.0.1:{port}")
    async with aiohttp.ClientSession() as client:
        async with client.get(sidecar.admin_url + "/readyz") as r:
            assert r.status == 503
            assert "upstream" in (await r.json())["reason"]
        async with client.get(sidecar.admin_url + "/healthz") as r:
            assert r.status == 200  # liveness does not depend on the upstream
        async with client.get(sidecar.admin_url + "/health/detailed") as r:
            down = await r.json()
        from tests.upstream import Upstream

        upstream = Upstream(port)
        upstream.start()
        try:
            async with client.get(sidecar.admin_url + "/readyz") as r:
                assert r.status == 200
            async with client.get(sidecar.admin_url + "/health/detailed") as r:
                up = await r.json()
        finally:
            upstream.close()
    assert down["components"]["upstream"]["state"] == "down"
    assert up["components"]["upstream"]["state"] == "up"
    assert up["score"] == 100
    assert down["score"] == 50
    assert up["components"]["circuitBreaker"]["state"] == "closed"


async def test_readiness_uses_the_health_path_when_set(start_sidecar, upstream):
    sidecar = start_sidecar({"upstream": {"healthPath": "/status/500"}}, upstream.url)
    async with aiohttp.ClientSession() as client, client.get(sidecar.admin_url + "/readyz") as r:
        assert r.status == 503
        assert "/status/500 answered 500" in (await r.json())["reason"]


async def test_metrics_endpoint_exports_every_documented_series(start_sidecar, upstream):
    sidecar = start_sidecar({}, upstream.url)
    async with aiohttp.ClientSession() as client, client.get(sidecar.url + "/echo") as r:
        assert r.status == 200
    text = sidecar.metrics()
    for name in (
        "rampart_http_request_duration_seconds_bucket",
        "rampart_upstream_request_duration_seconds_bucket",
        "rampart_circuit_state",
        "rampart_retries_total",
        "rampart_timeouts_total",
        "rampart_rejected_total",
        "rampart_inflight_requests",
    ):
        assert name in text, name
    # The route label is the configured route, never the raw path.
    assert 'route="default"' in text
    assert "/echo" not in text


def test_invalid_settings_exit_2_naming_the_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        "timeouts:\n  request: soon\nretries:\n  attempts: -1\n  tries: 3\n"
        "circuitBreaker: {openFor: 10}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "rampart_sidecar", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "timeouts.request: 'soon' is not a duration" in result.stderr
    assert "retries.attempts: Input should be greater than or equal to 0" in result.stderr
    assert "retries.tries: unknown field" in result.stderr
    assert result.stdout == ""


def test_flags_and_environment_override_the_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("listen: 127.0.0.1:1111\nupstream: {url: http://127.0.0.1:2222}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rampart_sidecar",
            "--config",
            str(config),
            "--check",
            "--listen",
            "127.0.0.1:3333",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"RAMPART_UPSTREAM": "http://127.0.0.1:4444", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert "listen: 127.0.0.1:3333" in result.stdout
    assert "url: http://127.0.0.1:4444" in result.stdout


async def test_logs_are_json_with_request_ids_and_no_secrets(start_sidecar, upstream):
    sidecar = start_sidecar(
        {"logging": {"level": "debug", "secretHeaders": ["X-Api-Key"]}}, upstream.url
    )
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            sidecar.url + "/echo?token=query-secret",
            headers={
                "Authorization": "Bearer auth-secret",
                "Cookie": "sid=cookie-secret",
                "X-Api-Key": "key-secret",
                "X-Request-ID": "trace-me-1",
            },
        ) as r,
    ):
        assert r.status == 200  # the upstream still got them: only the logs are clean
        assert (await r.json())["headers"]["Authorization"] == "Bearer auth-secret"
    await async_wait_until(lambda: "trace-me-1" in sidecar.logs(), timeout=5)
    logs = sidecar.logs()
    for secret in ("auth-secret", "cookie-secret", "key-secret", "query-secret", "session=abc"):
        assert secret not in logs, secret
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("msg") == "request"]
    assert access[0]["request_id"] == "trace-me-1"
    assert access[0]["status"] == 200
    debug = [e for e in entries if e.get("msg") == "request headers"]
    assert debug[0]["headers"]["Authorization"] == "[redacted]"  # the debug line exists


@pytest.mark.parametrize(("level", "lines"), [("info", 3), ("warning", 0)])
async def test_access_lines_follow_the_log_level_and_are_all_written_by_exit(
    start_sidecar, upstream, level, lines
):
    sidecar = start_sidecar({"logging": {"level": level}}, upstream.url)
    async with aiohttp.ClientSession() as client:
        for n in range(3):
            async with client.get(sidecar.url + f"/echo?n={n}") as r:
                assert r.status == 200
    sidecar.signal(signal.SIGTERM)
    assert await asyncio.to_thread(sidecar.proc.wait, 10) == 0
    entries = [json.loads(line) for line in sidecar.logs().splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("logger") == "rampart.access"]
    assert len(access) == lines
    assert all(e["path"] == "/echo" and e["status"] == 200 for e in access)


def _sidecar_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rampart_sidecar", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_port_in_use_is_one_line_and_status_3(upstream):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = _sidecar_cli(
            "--listen", f"127.0.0.1:{port}", "--admin", "127.0.0.1:0", "--upstream", upstream.url
        )
    finally:
        taken.close()
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert f"rampart-sidecar: cannot listen on 127.0.0.1:{port}:" in result.stderr


def test_check_refuses_an_admin_token_file_it_cannot_read(tmp_path):
    config = tmp_path / "sidecar.yaml"
    config.write_text("cache: {adminTokenFile: /nowhere/token}\n")
    result = _sidecar_cli("--config", str(config), "--check")
    assert result.returncode == 2
    assert "cache.adminTokenFile: /nowhere/token cannot be read" in result.stderr
