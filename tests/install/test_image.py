"""The Dockerfile and its build context, checked without a Docker engine.

No engine runs here (the e2e tier builds the image for real on kind). What can
be checked without one is checked for real: the context the ``.dockerignore``
leaves, matched with Docker's own rules, is copied aside and the project is
built from that copy alone; the Dockerfile's instructions are read for the
properties users and admission policies rely on.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from rampart_operator.render.sidecar import DEFAULT_ADMIN, DEFAULT_LISTEN
from rampart_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
# As the Dockerfile builds the wheel: with the locked setuptools and mypy already
# installed (in .venv from requirements/dev.txt), no build isolation.
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]


def docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as moby's patternmatcher compiles it."""
    pattern = os.path.normpath(pattern).lstrip("/")
    regex, index = "", 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            regex += ".*"
            index += 2
            if pattern.startswith("/", index):
                index += 1  # "**/" also matches nothing
            continue
        regex += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        index += 1
    return re.compile(f"^{regex}$")


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or any parent of it decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in rules:
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def build_context() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [
        (line.startswith("!"), docker_pattern(line.lstrip("!")))
        for line in (raw.strip() for raw in lines)
        if line and not line.startswith("#")
    ]
    reopened = [p.pattern for negated, p in rules if negated]
    files = []
    for directory, subdirectories, names in os.walk(ROOT):
        relative = os.path.relpath(directory, ROOT)
        prefix = "" if relative == "." else relative + "/"
        # Skip trees nothing can bring back (.git, .venv): only speed, same answer.
        subdirectories[:] = [
            d
            for d in subdirectories
            if not ignored(prefix + d, rules) or any(prefix + d in r for r in reopened)
        ]
        files += [prefix + name for name in names if not ignored(prefix + name, rules)]
    return sorted(files)


def test_docker_pattern_rules_match_the_documented_examples() -> None:
    # From Docker's .dockerignore documentation.
    rules = [(False, docker_pattern("*/temp*")), (False, docker_pattern("**/*.go"))]
    assert ignored("somedir/temporary.txt", rules)
    assert ignored("somedir/temp", rules)
    assert not ignored("temp", rules)
    assert ignored("a/b/c/main.go", rules)
    assert ignored("main.go", rules)
    rules = [(False, docker_pattern("*.md")), (True, docker_pattern("README*.md"))]
    assert not ignored("README-secret.md", rules)
    assert ignored("CHANGES.md", rules)


def test_the_context_holds_the_packages_and_nothing_else() -> None:
    files = build_context()
    top = {f.split("/")[0] for f in files}
    assert top == {
        "pyproject.toml",
        "setup.py",
        "README.md",
        "common",
        "operator",
        "sidecar",
        "backup",
        "requirements",
    }
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    # What a local install compiled: built for this machine, not the image's.
    assert not [f for f in files if f.endswith(".so")]
    size = sum((ROOT / f).stat().st_size for f in files)
    assert size < 1_000_000, f"the build context is {size} bytes"


def test_the_project_builds_from_the_context_alone(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for name in build_context():
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    result = subprocess.run(
        [*PIP_WHEEL, "-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("rampart-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("rampart_common", "rampart_operator", "rampart_sidecar", "rampart_backup"):
        assert f"{package}/__init__.py" in names
    # The request path is compiled (setup.py), so the image runs it as C.
    compiled = {n.split(".")[0] for n in names if n.endswith(".so")}
    assert {"rampart_sidecar/server", "rampart_sidecar/proxy"} <= compiled
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("rampart-operator", "rampart-sidecar", "rampart-backup"):
        assert f"{script} =" in scripts


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, grouped by stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    found: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, argument = line.partition(" ")
        if instruction.upper() == "FROM":
            found.append([])
        found[-1].append((instruction.upper(), argument.strip()))
    return found


def test_the_image_is_multi_stage_slim_and_runs_as_a_numeric_non_root_user() -> None:
    build, runtime = stages()
    base = runtime[0][1]
    assert "slim" in base
    assert base.startswith("python:3.11")
    # Pinned by digest: a tag moves under the build; both stages on the one base.
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    assert build[0][1] == f"{base} AS build"
    users = [argument for instruction, argument in runtime if instruction == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "runAsNonRoot can only verify a numeric UID"
    assert int(uid) > 0
    assert gid.isdigit()
    assert int(gid) > 0
    copies = [argument for instruction, argument in runtime if instruction == "COPY"]
    assert copies == ["--from=build /opt/rampart /opt/rampart"]  # no sources, no compilers
    installs = " ".join(argument for instruction, argument in runtime if instruction == "RUN")
    assert "gcc" not in installs
    assert "build-essential" not in installs


def test_the_image_holds_the_backup_agents_tools_and_exposes_the_default_ports() -> None:
    _, runtime = stages()
    installs = " ".join(argument for instruction, argument in runtime if instruction == "RUN")
    # The tests back up and restore with PostgreSQL 15's tools; the image carries the same.
    assert "postgresql-client-15" in installs
    assert "redis-tools" in installs
    assert "rm -rf /var/lib/apt/lists/*" in installs
    (exposed,) = [argument for instruction, argument in runtime if instruction == "EXPOSE"]
    defaults = OperatorSettings()
    wanted = {
        int(DEFAULT_LISTEN.rsplit(":", 1)[1]),
        int(DEFAULT_ADMIN.rsplit(":", 1)[1]),
        defaults.metrics_port,
        defaults.webhook_port,
        defaults.alert_port,
    }
    assert wanted <= {int(port) for port in exposed.split()}
    (command,) = [argument for instruction, argument in runtime if instruction == "CMD"]
    assert shlex.split(command.strip("[]").replace(",", " "))[0] == "rampart-operator"


@pytest.mark.parametrize("path", ["common/", "operator/", "sidecar/", "backup/"])
def test_every_package_the_build_stage_copies_is_in_the_context(path: str) -> None:
    build, _ = stages()
    copied = [argument.split()[0] for instruction, argument in build if instruction == "COPY"]
    assert path in copied
    assert any(f.startswith(path) for f in build_context())


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """A pip-compile lock: each package's pinned version and how many hashes it has."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert "==" in line, f"{path.name}: {line!r} is not pinned"
        requirement = line.split(";", 1)[0].split()[0]
        name, version = requirement.split("==")
        found[canonicalize_name(name)] = (version, line.count("--hash=sha256:"))
    return found


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [
        ("image.txt", "project.dependencies"),
        ("build.txt", "build-system.requires"),
        ("dev.txt", "project.dependencies"),
        ("dev.txt", "project.optional-dependencies.dev"),
        ("dev.txt", "build-system.requires"),
    ],
)
def test_the_locks_pin_what_pyproject_asks_for_each_with_its_hashes(lock: str, wanted: str) -> None:
    pins = locked(ROOT / "requirements" / lock)
    asked: Any = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for key in wanted.split("."):
        asked = asked[key]
    for text in asked:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(
            {"sys_platform": "linux", "platform_system": "Linux"}
        ):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {name}: run scripts/lock"
        version, _ = pins[name]
        assert requirement.specifier.contains(version), f"{lock}: {name}=={version} is not {text}"
    for name, (version, hashes) in pins.items():
        assert hashes >= 1, f"{lock}: {name}=={version} has no hash"


def test_the_tests_run_the_versions_the_image_ships() -> None:
    dev = locked(ROOT / "requirements" / "dev.txt")
    for lock in ("image.txt", "build.txt"):
        for name, (version, _) in locked(ROOT / "requirements" / lock).items():
            assert dev[name][0] == version, f"dev.txt has {name}=={dev[name][0]}, {lock} {version}"


def test_pip_installs_nothing_in_the_image_that_is_not_hash_locked() -> None:
    build, _ = stages()
    installs = [
        argument
        for instruction, argument in build
        if instruction == "RUN" and "pip install" in argument
    ]
    assert installs
    for argument in installs:
        for command in argument.split("&&"):
            if "pip install" not in command:
                continue
            words = command.split()
            if "-r" in words:  # a lock: every file checked against its hash
                assert "--require-hashes" in words, command
                assert words[words.index("-r") + 1].startswith("requirements/"), command
            else:  # only the wheel just built here, none of its dependencies fetched
                assert "--no-deps" in words, command
                assert words[-1] == "/tmp/wheel/*.whl", command
