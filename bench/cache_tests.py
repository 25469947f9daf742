"""The public HTTP caching test suite (http-tests/cache-tests) against the sidecar's cache.

    .venv/bin/python bench/cache_tests.py --suite /tmp/http-cache-tests \\
        [--backend memory|redis] [--set-cookie pass|strip|store] [--json results.json]

``--suite`` is a checkout of https://github.com/http-tests/cache-tests with
``npm i`` done; when the directory does not exist it is made from the local
mirror (``git archive HEAD``) and ``npm i`` is run there. Needs Node.js and npm
(and ``redis-server`` for ``--backend redis``).

The suite's origin (``npm run server``) runs on a free port, the sidecar in front
of it with its cache on (``cache.memory``, plus ``cache.redis`` on a throwaway
``redis-server`` with ``--backend redis``; ``cache.ttl`` stays 0, so responses
without caching headers are not stored, as the suite expects). Retries and the
circuit breaker are off unless ``--keep-policies``: the origin answers 5xx on
purpose, and a retried request or an open breaker would be scored against the
cache. The suite's client (``npm run cli``) then runs every test through the
sidecar, and its own ``determineTestResult`` (``test-engine/lib/results.mjs``)
classifies the results, as on https://cache-tests.fyi: a test's ``kind`` is
``required`` (also when absent), ``optimal`` or ``check``; results are ✅ pass,
⛔️ fail (required), ⚠️ optional_fail (optimal), Y/N yes/no (check), 🔹
setup_fail, ⁉️ harness_fail, ⚪️ dependency_fail (a test it depends on did not
pass), ↻ retry and - untested (browser-only tests, which the CLI skips).

Prints a table by kind and the tests that did not pass, required first. Exits 0
whatever the score: this is a measurement, not a gate (1 only when the suite
could not be run at all).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import yaml
from tests.waiting import wait_until

MIRROR = Path("/work/.mirror/http-tests+cache-tests/repo")
KINDS = ("required", "optimal", "check")
# The suite's result types (results.mjs resultTypes), in table order, with its symbols.
RESULT_TYPES = {
    "pass": "✅",
    "fail": "⛔️",
    "optional_fail": "⚠️",
    "yes": "Y",
    "no": "N",
    "setup_fail": "🔹",
    "harness_fail": "⁉️",
    "dependency_fail": "⚪️",
    "retry": "↻",
    "untested": "-",
}
PASSED = frozenset({"pass", "yes"})  # results.mjs passTypes

# Runs inside the checkout: every test the suite defines, classified by the suite's own
# determineTestResult from the CLI's raw results (read on stdin).
CLASSIFY_JS = """
import { readFileSync } from 'node:fs'
import tests from './tests/index.mjs'
import { determineTestResult, resultTypes } from './test-engine/lib/results.mjs'

const results = JSON.parse(readFileSync(0, 'utf8'))
const passTypes = [resultTypes.pass, resultTypes.yes]
const passed = id => passTypes.includes(determineTestResult(tests, id, results))
const rows = []
for (const suite of tests) {
  for (const test of suite.tests) {
    const type = determineTestResult(tests, test.id, results)
    const raw = results[test.id]
    rows.push({
      id: test.id,
      name: test.name,
      suite: suite.name,
      kind: test.kind ?? 'required',
      result: Object.keys(resultTypes).find(name => resultTypes[name] === type),
      own: raw === true ? 'passed' : Array.isArray(raw) ? raw.join(': ') : '',
      blocked_by: (test.depends_on ?? []).filter(id => !passed(id))
    })
  }
}
console.log(JSON.stringify(rows))
"""


@dataclass(frozen=True)
class Outcome:
    id: str
    name: str
    suite: str
    kind: str
    result: str  # a key of RESULT_TYPES
    own: str  # the test's own outcome: "passed" or "<error name>: <message>"
    blocked_by: list[str]  # dependencies that did not pass (for dependency_fail)


def log(message: str) -> None:
    print(f"cache_tests: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def started(
    ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], logs: Path
) -> None:
    """``ready`` within 30 s, unless the process exits first (its log tells why)."""

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{logs.read_text()}")
        return ready()

    try:
        wait_until(up, 30, 0.1, what)
    except AssertionError:
        raise RuntimeError(f"{what} did not come up in 30 s:\n{logs.read_text()}") from None


def get(url: str) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=2)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def answers(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` (any status)."""
    try:
        get(url)
    except (OSError, http.client.HTTPException):
        return False
    return True


@contextlib.contextmanager
def running(
    args: list[str], logs: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own process group (npm runs node under a shell), stopped on exit."""
    with logs.open("wb") as out:
        proc = subprocess.Popen(
            args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def ensure_suite(suite: Path, mirror: Path) -> None:
    if not suite.exists():
        log(f"{suite} does not exist: git -C {mirror} archive HEAD | tar -x -C {suite}")
        suite.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(mirror), "archive", "HEAD"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(suite)], input=archive, check=True)
    if not (suite / "node_modules").exists():
        log(f"npm i (in {suite})")
        subprocess.run(
            ["npm", "i", "--no-audit", "--no-fund"], cwd=suite, stdout=sys.stderr, check=True
        )


@contextlib.contextmanager
def origin(suite: Path, workdir: Path) -> Iterator[str]:
    """The suite's test server; port 0, and the port it bound read from its first line."""
    logs = workdir / "origin.log"
    command = [
        "npm",
        "run",
        "--silent",
        "server",
        "--port=0",
        f"--pidfile={workdir / 'origin.pid'}",  # not the shared /tmp default
    ]
    with running(command, logs, cwd=suite) as proc:
        port = 0

        def listening() -> bool:
            nonlocal port
            if match := re.search(r"Listening on https?://\S+:(\d+)/", logs.read_text()):
                port = int(match.group(1))
                return answers(f"http://127.0.0.1:{port}/")
            return False

        started(listening, "the origin (npm run server)", proc, logs)
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    port = free_port()
    binary = shutil.which("redis-server") or "redis-server"
    command = [binary, "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
    logs = workdir / "redis.log"
    with running(command, logs) as proc:

        def up() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return True
            return False

        started(up, "redis-server", proc, logs)
        yield f"redis://127.0.0.1:{port}/0"


def sidecar_settings(
    redis_url: str | None, keep_policies: bool, set_cookie: str = "pass"
) -> dict[str, Any]:
    cache: dict[str, Any] = {
        "memory": {"maxEntries": 10000, "maxBytes": 64 * 1024 * 1024},
        "setCookie": set_cookie,
    }
    if redis_url:
        cache["redis"] = {"url": redis_url}
    settings: dict[str, Any] = {
        "cache": cache,
        "logging": {"level": "warning", "accessLog": False},
        "shutdown": {"drainTimeout": "1s"},
    }
    if not keep_policies:
        settings["retries"] = {"attempts": 0}
        settings["circuitBreaker"] = {"consecutiveFailures": 0}
    return settings


@contextlib.contextmanager
def sidecar(
    binary: str, settings: dict[str, Any], upstream: str, workdir: Path
) -> Iterator[dict[str, str]]:
    """The sidecar's URLs, ``{"proxy": URL, "admin": URL}`` (from its --address-file)."""
    config = workdir / "sidecar.yaml"
    config.write_text(yaml.safe_dump(settings))
    address_file = workdir / "sidecar.address"
    command = [binary, "--config", str(config), "--upstream", upstream]
    command += ["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]
    command += ["--address-file", str(address_file)]
    logs = workdir / "sidecar.log"
    with running(command, logs) as proc:
        addresses: dict[str, str] = {}

        def ready() -> bool:
            if not addresses:
                if not address_file.exists():
                    return False
                addresses.update(json.loads(address_file.read_text()))
            # Admin liveness, then a request through to the origin (its 404 for /state/).
            return answers(addresses["admin"] + "/healthz") and answers(
                addresses["proxy"] + "/state/rampart-probe"
            )

        started(ready, "the sidecar", proc, logs)
        yield addresses


def run_cli(suite: Path, base: str) -> tuple[dict[str, Any], str]:
    """The CLI's raw results (test id: true or [error name, message]) and its stderr."""
    done = subprocess.run(
        ["npm", "run", "--silent", "cli", f"--base={base}"],
        cwd=suite,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    start = done.stdout.find("{")
    if done.returncode != 0 or start < 0:
        raise RuntimeError(f"the cli failed ({done.returncode}):\n{done.stderr}\n{done.stdout}")
    results: dict[str, Any] = json.loads(done.stdout[start:])
    return results, done.stderr


def classify(suite: Path, results: dict[str, Any]) -> list[Outcome]:
    done = subprocess.run(
        ["node", "--no-warnings", "--input-type=module", "-e", CLASSIFY_JS],
        cwd=suite,
        input=json.dumps(results),
        capture_output=True,
        text=True,
        check=True,
    )
    return [Outcome(**row) for row in json.loads(done.stdout)]


def explain(outcome: Outcome) -> str:
    if outcome.result == "dependency_fail":
        own = "its own result passed" if outcome.own == "passed" else outcome.own
        return f"needs {', '.join(outcome.blocked_by)}; {own}"
    return outcome.own


def report(outcomes: list[Outcome], cli_errors: str) -> str:
    run = [o for o in outcomes if o.result != "untested"]
    by_kind = {kind: Counter(o.result for o in outcomes if o.kind == kind) for kind in KINDS}
    shown = [t for t in RESULT_TYPES if any(by_kind[k][t] for k in KINDS)]
    passed = sum(o.result in PASSED for o in run)
    lines = [
        f"# cache-tests: {len(outcomes)} tests defined, {len(run)} run "
        f"(the rest are browser-only); passed {passed} / {len(run)} (✅ or Y)",
        "",
        "| kind | run | passed | not passed | "
        + " | ".join(f"{RESULT_TYPES[t]} {t}" for t in shown)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(shown),
    ]
    for kind in KINDS:
        counts = by_kind[kind]
        ran = sum(counts.values()) - counts["untested"]
        ok = sum(counts[t] for t in PASSED)
        cells = " | ".join(str(counts[t]) for t in shown)
        lines.append(f"| {kind} | {ran} | {ok} | {ran - ok} | {cells} |")
    failing = [o for o in run if o.result not in PASSED]
    failing.sort(key=lambda o: KINDS.index(o.kind))  # stable: suite order within a kind
    lines += ["", f"## not passed ({len(failing)}), required first", ""]
    for kind in KINDS:
        these = [o for o in failing if o.kind == kind]
        if these:
            lines.append(f"### {kind} ({len(these)})")
        for o in these:
            lines.append(f"{RESULT_TYPES[o.result]} {o.id}  [{o.suite}] {o.name}")
            lines.append(f"      {explain(o)[:200]}")
    # The CLI prints one ERROR line per test whose PUT /config (its setup) was refused.
    refusals = Counter(
        re.sub(r"(retry-after|x-request-id): \S+\s*", "", line.split(" ", 2)[2]).strip()
        for line in cli_errors.splitlines()
        if line.startswith("ERROR: ")
    )
    if refusals:
        lines += ["", f"## cli errors ({refusals.total()})", ""]
        lines += [f"{count:4d}x  {message[:200]}" for message, count in refusals.most_common()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--suite",
        type=Path,
        default=Path(tempfile.gettempdir()) / "http-cache-tests",
        help="checkout of http-tests/cache-tests, made from --mirror when absent",
    )
    parser.add_argument("--mirror", type=Path, default=MIRROR, help="bare git mirror of it")
    parser.add_argument(
        "--sidecar",
        default=str(Path(sys.executable).parent / "rampart-sidecar"),
        help="the rampart-sidecar executable (default: this venv's)",
    )
    parser.add_argument("--backend", choices=("memory", "redis"), default="memory")
    parser.add_argument("--json", type=Path, help="save the CLI's raw results here")
    parser.add_argument(
        "--set-cookie",
        choices=("pass", "strip", "store"),
        default="pass",
        help="the sidecar's cache.setCookie (pass, its default, never stores Set-Cookie)",
    )
    parser.add_argument(
        "--keep-policies",
        action="store_true",
        help="keep the sidecar's default retries and circuit breaker",
    )
    args = parser.parse_args()
    suite = args.suite.resolve()
    ensure_suite(suite, args.mirror)

    with (
        tempfile.TemporaryDirectory(prefix="rampart-cache-tests-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        try:
            upstream = stack.enter_context(origin(suite, workdir))
            redis_url = (
                stack.enter_context(redis_server(workdir)) if args.backend == "redis" else None
            )
            settings = sidecar_settings(redis_url, args.keep_policies, args.set_cookie)
            urls = stack.enter_context(sidecar(args.sidecar, settings, upstream, workdir))
            log(f"origin {upstream}, sidecar {urls['proxy']} ({args.backend} cache): running")
            started = time.monotonic()
            results, cli_errors = run_cli(suite, urls["proxy"])
            took = time.monotonic() - started
            stats = get(urls["admin"] + "/cache/stats")[1].decode()
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            # No measurement at all: say so with the status, unlike a low score.
            sys.exit(f"cache_tests: could not run the suite: {error}")

    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    commit = subprocess.run(
        ["git", "-C", str(args.mirror), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"# command: .venv/bin/python bench/cache_tests.py --suite {args.suite} "
        f"--backend {args.backend}" + (" --keep-policies" if args.keep_policies else "")
    )
    print(f"# suite {suite} (mirror HEAD {commit or '?'}), ran in {took:.0f} s")
    print(f"# sidecar GET /cache/stats: {' '.join(stats.split())}")
    print(report(classify(suite, results), cli_errors))


if __name__ == "__main__":
    main()
