"""The docs run: their resources validate and render, their commands run, their
metrics exist.

- Every fenced YAML block that is a HardenedService (or a ``spec:`` of one) is
  validated and rendered as the operator would.
- Every command in a ``sh`` or ``console`` block that can run without a
  cluster, a database or minutes of a benchmark is run, and where the page
  shows its output, the output is compared. A block with any other command
  says why on the line before its fence: ``<!-- not run: REASON -->``.
- Every ``rampart_…`` metric a page names exists, with the labels it names,
  in what the sidecar, the operator and the backup agent export.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rampart_operator.alertproof import PROOF_LABEL
from rampart_operator.render import render
from rampart_operator.settings import OperatorSettings
from rampart_operator.validation import validate

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "docs" / "decisions").glob("*.md")),
    ROOT / "charts" / "rampart" / "README.md",
    ROOT / "e2e" / "README.md",
    ROOT / "examples" / "gitops" / "README.md",
]
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>.+?) -->\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str
    not_run: str | None  # the reason given, if the page says it is not run

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(*langs: str) -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            if match["lang"] not in langs:
                continue
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = NOT_RUN.search(before)
            body = "\n".join(line[len(match["indent"]) :] for line in match["body"].splitlines())
            found.append(
                Block(
                    page,
                    text[: match.start()].count("\n") + 1,
                    match["lang"],
                    body,
                    marker["reason"] if marker else None,
                )
            )
    return found


def resource_of(document: dict[str, Any]) -> dict[str, Any] | None:
    """A HardenedService, or one around a ``spec:`` fragment (its own name and image)."""
    if document.get("kind") == "HardenedService":
        return document
    if set(document) == {"spec"}:
        spec = dict(document["spec"])
        if "image" not in spec and "template" not in spec:
            spec["image"] = "ghcr.io/acme/docs:1"
        return {
            "apiVersion": "rampart.dev/v1alpha1",
            "kind": "HardenedService",
            "metadata": {"name": "docs", "namespace": "docs"},
            "spec": spec,
        }
    return None


YAML_BLOCKS = [b for b in blocks("yaml") if b.not_run is None]


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=lambda b: b.where)
def test_every_resource_in_the_docs_validates_and_renders(block: Block, tmp_path: Path) -> None:
    if block.body.startswith("# alertmanager.yml"):
        # Alertmanager's own checker reads it, as Alertmanager would.
        config = tmp_path / "alertmanager.yml"
        config.write_text(block.body)
        done = subprocess.run(
            ["amtool", "check-config", str(config)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{block.where}: {done.stdout}{done.stderr}"
        return
    documents = [d for d in yaml.safe_load_all(block.body) if isinstance(d, dict)]
    resources = [r for d in documents if (r := resource_of(d)) is not None]
    assert resources, f"{block.where}: not a HardenedService: mark it <!-- not run: why -->"
    for resource in resources:
        assert [str(p) for p in validate(resource)] == [], block.where
        assert render(resource, OperatorSettings()), block.where


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, the output the page shows for it), continuation lines joined."""
    found: list[tuple[str, list[str]]] = []
    lines = block.body.splitlines()
    console = block.lang == "console" or any(line.startswith("$ ") for line in lines)
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if console and not line.startswith("$ "):
            if found:
                found[-1][1].append(line)
            continue
        command = line.removeprefix("$ ")
        while command.rstrip().endswith("\\") and index < len(lines):
            command = command.rstrip()[:-1] + " " + lines[index].strip()
            index += 1
        command = command.split("  #", 1)[0].strip()
        if command and not command.startswith("#"):
            found.append((command, []))
    return found


def offline(command: str) -> bool:
    """Whether a command needs nothing but this checkout (the rest need a marker)."""
    argv = shlex.split(command)
    return (
        argv[:2] in (["rampart-operator", "validate"], ["rampart-operator", "render"])
        or argv == ["rampart-operator", "crd"]
        or (argv[0] == "rampart-sidecar" and "--check" in argv)
        or argv[:2] == [".venv/bin/python", "dashboards/generate.py"]
    )


SHELL_BLOCKS = blocks("sh", "console")


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.where)
def test_every_command_in_the_docs_runs_or_says_why_not(block: Block, tmp_path: Path) -> None:
    found = commands(block)
    assert found, block.where
    if block.not_run is not None:
        assert len(block.not_run) > 10, f"{block.where}: say why it is not run"
        return
    for command, shown in found:
        assert offline(command), (
            f"{block.where}: {command!r} needs more than this checkout: "
            "run it in a test, or put <!-- not run: REASON --> before the block"
        )
        argv = shlex.split(command)
        if argv[0].startswith("rampart-"):
            argv[0] = str(BIN / argv[0])
        if argv[:2] == [".venv/bin/python", "dashboards/generate.py"]:
            argv = [sys.executable, "dashboards/generate.py", "--check"]  # never rewrite
        done = subprocess.run(
            argv,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        output = (done.stdout + done.stderr).strip()
        if shown:
            assert output == "\n".join(shown).strip(), f"{block.where}: {command}\n{output}"
        else:
            assert done.returncode == 0, f"{block.where}: {command}\n{output}"


def exported() -> dict[str, set[str]]:
    """Every metric the three programs export, with its label names."""
    from prometheus_client import CollectorRegistry

    from rampart_backup.metrics import DRILL_SERIES, record, record_drill
    from rampart_operator.metrics import OperatorMetrics
    from rampart_sidecar.metrics import Recorder

    found: dict[str, set[str]] = {}

    def collect(registry: CollectorRegistry) -> None:
        # Each collector's declared label names: a labelled series exists in
        # /metrics only once something was counted, the declaration always.
        for collector, names in registry._collector_to_names.items():
            labels = set(getattr(collector, "_labelnames", ()) or ())
            for name in names:
                found.setdefault(name, set()).update(labels)

    collect(Recorder().registry)
    collect(OperatorMetrics().registry)
    return found | _pushed(record, record_drill, DRILL_SERIES)


def _pushed(record: Any, record_drill: Any, series: Any) -> dict[str, set[str]]:
    import tempfile

    found: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / "run.prom", Path(tmp) / "drill.prom"]
        labels = {"namespace": "ns", "hardenedservice": "hs"}
        record("db", "postgresql", True, 1.0, 10, files[0], None, labels)
        record_drill("db", "postgresql", dict.fromkeys(series, 1.0), files[1], None, labels)
        for path in files:
            for line in path.read_text().splitlines():
                if line and not line.startswith("#"):
                    name, _, rest = line.partition("{")
                    found[name] = set(re.findall(r"(\w+)=", rest.split("}")[0]))
    return found


def served_names(tmp_path: Path) -> set[str]:
    """The metric families a running sidecar's /metrics and the operator's exposition
    list (every declared family is listed, labelled or not, with its TYPE line)."""
    from prometheus_client import generate_latest

    from rampart_operator.metrics import OperatorMetrics
    from tests.conftest import Sidecar
    from tests.upstream import Upstream

    upstream = Upstream()
    upstream.start()
    sidecar = Sidecar(tmp_path, {"cache": {"memory": {"maxEntries": 10}}}, upstream.url)
    try:
        text = sidecar.metrics() + generate_latest(OperatorMetrics().registry).decode()
    finally:
        sidecar.stop()
        upstream.close()
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
            names.update(name + suffix for suffix in suffixes.get(kind, ()))
    return names


def test_every_metric_the_docs_name_is_exported_with_its_labels(tmp_path: Path) -> None:
    metrics = exported()
    served = served_names(tmp_path)
    named = 0
    for page in PAGES:
        text = page.read_text()
        for match in re.finditer(r"`(rampart_[a-z_]+)(?:\{([a-z_,]*)\})?`", text):
            name, labels = match[1], match[2]
            if name.endswith("_"):
                continue  # a prefix, as in "rampart_restore_drill_..."
            if name == PROOF_LABEL:
                continue  # the label on every rendered alert, not a metric
            assert name in metrics, f"{page.relative_to(ROOT)}: {name} is not exported"
            if not name.startswith(("rampart_backup", "rampart_restore_drill")):
                # What the running sidecar or the operator serves at /metrics.
                assert name in served, f"{page.relative_to(ROOT)}: {name} is not served"
            have = metrics[name]
            for label in filter(None, (labels or "").split(",")):
                assert label in have, f"{page.relative_to(ROOT)}: {name} has no label {label}"
            named += 1
    assert named > 30


def chart_values() -> list[tuple[str, str]]:
    text = (ROOT / "charts" / "rampart" / "README.md").read_text()
    return re.findall(r"^\| `([a-zA-Z.]+)` \| `([^`]*)` \|", text, flags=re.M)


def changed(default: str) -> Any:
    """Another value than the documented default, of the same type."""
    value = yaml.safe_load(default or '""')
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, list):
        return ["docs-check"]
    if value in ("Fail", "Ignore"):
        return "Ignore" if value == "Fail" else "Fail"
    if value == "info":
        return "debug"
    if value == "restricted":
        return "baseline"
    return "docs-check" if not value else value + "-docs-check"


def nested(path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    tree: dict[str, Any] = {leaf: value}
    for parent in reversed(parents):
        tree = {parent: tree}
    return tree


# What a value needs beside it to render at all.
REQUIRES = {"outOfCluster.enabled": {"outOfCluster": {"webhookUrl": "https://127.0.0.1:9443"}}}
# Values whose default does not render alone: compared with the alternative the chart asks for.
ALTERNATIVES = {"clusterWide": {"watchNamespaces": ["shop"]}}


def merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    out = dict(first)
    for key, value in second.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else value
    return out


@pytest.mark.parametrize(("path", "default"), chart_values(), ids=lambda v: str(v))
def test_every_chart_value_the_readme_documents_changes_the_output(path: str, default: str) -> None:
    from tests.chart import render as helm_template

    # A value under a switch matters only with the switch on: both renders have it on.
    values = yaml.safe_load((ROOT / "charts" / "rampart" / "values.yaml").read_text())
    parent, _, leaf = path.rpartition(".")
    block: Any = values
    for part in parent.split(".") if parent else []:
        block = block[part]
    base = nested(f"{parent}.enabled", True) if leaf != "enabled" and "enabled" in block else {}
    value = "http://alertmanager.monitoring:9093" if path.endswith("Url") else changed(default)
    if path.endswith("Urls"):
        value = ["http://prometheus.monitoring:9090"]
    other_values = merged(merged(base, nested(path, value)), REQUIRES.get(path, {}))
    plain = helm_template(ALTERNATIVES.get(path, base))
    other = helm_template(other_values)
    assert plain.returncode == 0, plain.stderr
    assert other.returncode == 0, other.stderr
    assert plain.stdout != other.stdout, f"{path}: documented, but changes nothing"
