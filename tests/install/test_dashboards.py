"""The Grafana dashboards we ship: generated, valid, in the chart, named by the runbooks.

That every panel's query returns data from the real programs is e2e/test_dashboards.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from tests.chart import manifests

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "dashboards").glob("*.json"))
SERVICE_WIDE = ("rampart_operator_alert", "rampart_operator_reconcil", "rampart_operator_child")
UNSCOPED = (*SERVICE_WIDE, "rampart_operator_admission", "rampart_operator_webhook")


def boards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in FILES}


def dashboard_maps(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m for m in rendered if m["kind"] == "ConfigMap" and "-dashboard-" in m["metadata"]["name"]
    ]


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def test_the_committed_dashboards_are_what_the_generator_builds() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [p.name for p in FILES] == [
        "rampart-operator.json",
        "rampart-rollouts.json",
        "rampart-service.json",
    ]


@pytest.mark.parametrize("name", [p.name for p in FILES])
def test_each_dashboard_is_what_grafanas_schema_reads(name: str) -> None:
    # The SDK's models are generated from Grafana's dashboard schema: a field they
    # do not know, or a panel options block they cannot read, fails the round trip.
    board = boards()[name]
    read = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert read == board
    assert board["schemaVersion"] >= 36  # Grafana 9 and later read it as it is


@pytest.mark.parametrize("name", [p.name for p in FILES])
def test_every_panel_has_a_unit_a_description_and_the_datasource_variable(name: str) -> None:
    board = boards()[name]
    variables = [v["name"] for v in board["templating"]["list"]]
    assert variables == ["datasource", "namespace", "hardenedservice"]
    for panel in panels(board):
        title = panel["title"]
        assert panel["description"], title
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        if panel["type"] != "state-timeline":
            assert panel["fieldConfig"]["defaults"].get("unit"), title
        assert panel["targets"], title
        for target in panel["targets"]:
            expr = target["expr"]
            if not expr.startswith(UNSCOPED) and "(rampart_operator_" not in expr.split("[")[0]:
                # Per-service series follow the namespace and HardenedService picked.
                assert "$namespace" in expr, (title, expr)
                assert "$hardenedservice" in expr, (title, expr)


def test_thresholds_are_drawn_where_an_alert_has_one() -> None:
    service = {p["title"]: p for p in panels(boards()["rampart-service.json"])}
    for title in ("Error ratio", "Latency", "Burn rate"):
        style = service[title]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]
        assert style["mode"] == "dashed", title
        steps = service[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert any(step["color"] == "red" for step in steps), title


def test_alert_firings_annotate_the_rollouts_dashboard() -> None:
    annotations = boards()["rampart-rollouts.json"]["annotations"]["list"]
    assert any("ALERTS{" in a.get("expr", "") for a in annotations)


def test_the_chart_ships_the_same_dashboards_as_labelled_configmaps() -> None:
    assert not dashboard_maps(manifests())
    rendered = manifests({"dashboards": {"enabled": True, "folder": "Rampart"}})
    maps = [
        m for m in rendered if m["kind"] == "ConfigMap" and "dashboard" in m["metadata"]["name"]
    ]
    shipped: dict[str, Any] = {}
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"]["grafana_folder"] == "Rampart"
        for filename, text in config_map["data"].items():
            shipped[filename] = json.loads(text)
    assert shipped == boards()
    chart_copies = sorted((ROOT / "charts" / "rampart" / "dashboards").glob("*.json"))
    assert [p.read_text() for p in chart_copies] == [p.read_text() for p in FILES]


def test_the_sidecar_label_and_namespace_are_settings() -> None:
    rendered = manifests(
        {"dashboards": {"enabled": True, "label": "grafana_dashboards", "namespace": "monitoring"}}
    )
    maps = [
        m for m in rendered if m["kind"] == "ConfigMap" and "dashboard" in m["metadata"]["name"]
    ]
    assert len(maps) == len(FILES)
    for config_map in maps:
        assert config_map["metadata"]["namespace"] == "monitoring"
        assert config_map["metadata"]["labels"]["grafana_dashboards"] == "1"


def test_every_alert_runbook_names_panels_that_exist() -> None:
    titles = {board["title"]: {p["title"] for p in panels(board)} for board in boards().values()}
    text = (ROOT / "docs" / "alerts.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    alerts = {s.split("\n", 1)[0]: s for s in sections if s.startswith("Rampart")}
    from rampart_operator.render.alerts import RULE_NAMES

    assert set(RULE_NAMES) <= set(alerts)
    for alert in RULE_NAMES:
        found = re.search(r"^\*\*Dashboard:\*\* (.+?) → (.+)$", alerts[alert], flags=re.M)
        assert found, f"docs/alerts.md: {alert} names no dashboard"
        board, shown = found.groups()
        assert board in titles, (alert, board)
        named = re.findall(r"\*([^*]+)\*", shown)
        assert named, alert
        assert set(named) <= titles[board], (alert, set(named) - titles[board])
