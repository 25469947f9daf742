"""The Helm chart rendered by the real ``helm`` binary that scripts/install puts in .tools/bin."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "rampart"
HELM = ROOT / ".tools" / "bin" / "helm"
# prometheus-operator's and Gateway API's CRDs at pinned releases (scripts/fetch-crds).
THIRD_PARTY_CRDS = ROOT / ".tools" / "crds"
RELEASE = NAMESPACE = "rampart"
VALUES = ("--values", "-")  # on standard input


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    assert HELM.exists(), f"{HELM} is missing: run scripts/install"
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)


def third_party_crds() -> list[Path]:
    """The published CRD files; a missing copy fails, it never validates against nothing."""
    paths = sorted(THIRD_PARTY_CRDS.glob("*.yaml"))
    assert len(paths) >= 4, f"{THIRD_PARTY_CRDS} lacks the CRDs: run scripts/install"
    return paths


# The chart asks where the operator works; the tests that do not say take the
# whole cluster, as the e2e tier's operator does.
WHERE = {"clusterWide": True}


def render(values: dict[str, Any] | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart with ``values`` on top of its defaults (and WHERE,
    unless ``values`` says where itself)."""
    assert HELM.exists(), f"{HELM} is missing: run scripts/install"
    values = values or {}
    if "watchNamespaces" not in values and "clusterWide" not in values:
        values = {**WHERE, **values}
    return subprocess.run(
        [str(HELM), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *VALUES, *extra],
        input=json.dumps(values),
        capture_output=True,
        text=True,
        timeout=120,
    )


def manifests(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    result = render(values)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if isinstance(d, dict)]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name}"
    return matches[0]
