"""Alerts proven with the real promtool, and monitoring objects validated against their CRDs."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rampart_operator.alertproof import PROOF_LABEL, proof, proof_key
from rampart_operator.render import render
from rampart_operator.render.alerts import RULE_NAMES, BurnWindow, burn_factor
from rampart_operator.schema import to_json_schema
from rampart_operator.settings import OperatorSettings
from rampart_operator.validation import validate
from tests.chart import THIRD_PARTY_CRDS

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
# Outside CI a missing promtool skips; in CI (where scripts/install ran) it fails.
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool not installed (scripts/install installs Debian's prometheus package)",
)

SERVICE = {
    "apiVersion": "rampart.dev/v1alpha1",
    "kind": "HardenedService",
    "metadata": {"name": "checkout", "namespace": "shop", "uid": "u1"},
    "spec": {
        "image": "ghcr.io/acme/checkout:1",
        "sidecar": {"cache": {"ttl": "60s"}},
        "alerts": {
            "errorRate": 0.05,
            "latencyP95": "800ms",
            "slo": {"objective": 99.9, "window": "30d"},
            "labels": {"team": "payments"},
        },
        "monitoring": {"serviceMonitor": {"enabled": True}, "labels": {"release": "kube-prom"}},
        "backup": {
            "schedule": "0 2 * * *",
            "pushgateway": "http://pushgateway.monitoring:9091",
            "sources": [{"name": "db", "postgres": {"urlSecretRef": {"name": "db", "key": "url"}}}],
            "destination": {"pvc": "backups"},
            "encryption": {"keySecretRef": {"name": "k", "key": "k"}},
            "drill": {"schedule": "0 4 * * *", "rto": "10m", "rpo": "26h"},
        },
    },
}
LABELS = {"namespace": "shop", "hardenedservice": "checkout"}


def manifests(resource: dict[str, Any] = SERVICE) -> dict[str, dict[str, Any]]:
    return {m["kind"] + m["metadata"]["name"]: m for m in render(resource, OperatorSettings())}


def rule(name: str) -> dict[str, Any]:
    for group in manifests()["PrometheusRulecheckout"]["spec"]["groups"]:
        for item in group["rules"]:
            if item.get("alert") == name:
                return item
    raise KeyError(name)


def crd_schema(file: str) -> dict[str, Any]:
    crd = yaml.safe_load((THIRD_PARTY_CRDS / file).read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize(
    ("key", "file"),
    [
        ("PrometheusRulecheckout", "monitoring.coreos.com_prometheusrules.yaml"),
        ("PodMonitorcheckout", "monitoring.coreos.com_podmonitors.yaml"),
        ("ServiceMonitorcheckout", "monitoring.coreos.com_servicemonitors.yaml"),
    ],
)
def test_monitoring_objects_validate_against_the_prometheus_operator_crds(key, file):
    # Strict about unknown fields, like the API server with field validation on; no
    # metaschema check, since the CRDs hold Go regexes (inline flags) Python rejects.
    validator = jsonschema.Draft202012Validator(to_json_schema(crd_schema(file)))
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(manifests()[key])
    ]
    assert errors == []


def test_labels_reach_the_objects_and_every_alert():
    found = manifests()
    assert found["PrometheusRulecheckout"]["metadata"]["labels"]["team"] == "payments"
    assert found["PodMonitorcheckout"]["metadata"]["labels"]["release"] == "kube-prom"
    for name in RULE_NAMES:
        labels = rule(name)["labels"]
        assert labels["namespace"] == "shop"
        assert labels["hardenedservice"] == "checkout"
        assert labels["severity"] in ("critical", "warning")
        assert labels["team"] == "payments"
        assert set(rule(name)["annotations"]) == {"summary", "description", "runbook_url"}
        anchor = rule(name)["annotations"]["runbook_url"].split("#")[1]
        assert f"## {name}" in (ROOT / "docs" / "alerts.md").read_text(), name
        assert anchor == name.lower()


def test_everything_is_off_cleanly_when_disabled():
    disabled = copy.deepcopy(SERVICE)
    disabled["spec"]["alerts"]["enabled"] = False
    disabled["spec"]["monitoring"] = {"podMonitor": {"enabled": False}}
    kinds = {m["kind"] for m in render(disabled, OperatorSettings())}
    assert not kinds & {"PrometheusRule", "PodMonitor", "ServiceMonitor"}
    bare = copy.deepcopy(SERVICE)
    del bare["spec"]["alerts"], bare["spec"]["monitoring"]
    assert "PodMonitor" not in {m["kind"] for m in render(bare, OperatorSettings())}
    alerts_only = copy.deepcopy(SERVICE)
    del alerts_only["spec"]["monitoring"]
    assert "PodMonitor" in {m["kind"] for m in render(alerts_only, OperatorSettings())}


def test_no_cache_no_cache_alert_and_no_slo_no_burn_alerts():
    plain = copy.deepcopy(SERVICE)
    del plain["spec"]["sidecar"], plain["spec"]["alerts"]["slo"], plain["spec"]["backup"]
    names = {
        r.get("alert")
        for m in render(plain, OperatorSettings())
        if m["kind"] == "PrometheusRule"
        for g in m["spec"]["groups"]
        for r in g["rules"]
    }
    assert names == {"RampartHighErrorRate", "RampartHighLatencyP95", "RampartCircuitOpen"}


def test_rules_use_only_metrics_that_are_exported(tmp_path):
    from rampart_backup.metrics import DRILL_SERIES, record, record_drill
    from rampart_sidecar.metrics import Recorder

    exported = {metric.name for metric in Recorder().registry.collect()}
    record("db", "postgresql", True, 1.0, 10, tmp_path / "m.prom", None)
    record_drill("db", "postgresql", dict.fromkeys(DRILL_SERIES, 1.0), tmp_path / "d.prom", None)
    exported |= {
        line.split()[2]
        for path in ("m.prom", "d.prom")
        for line in (tmp_path / path).read_text().splitlines()
        if line.startswith("# TYPE")
    }
    text = yaml.safe_dump(manifests()["PrometheusRulecheckout"]["spec"])
    used = {
        word.split("{")[0]
        for word in text.replace("(", " ").split()
        if word.startswith("rampart_") and "{" in word
    }
    assert {"rampart_backup_last_run_success", "rampart_circuit_state"} <= used
    for name in used:
        base = name.removesuffix("_count").removesuffix("_bucket").removesuffix("_total")
        assert base in exported, name


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("30d", [14.4, 6.0, 3.0, 1.0]),
        ("28d", [13.44, 5.6, 2.8, 0.933333]),
        ("7d", [3.36, 1.4, 0.7, 0.233333]),
    ],
)
def test_burn_factors_scale_with_the_window(window, expected):
    pairs = [
        BurnWindow("1h", "5m", 0.02),
        BurnWindow("6h", "30m", 0.05),
        BurnWindow("1d", "2h", 0.10),
        BurnWindow("3d", "6h", 0.10),
    ]
    assert [burn_factor(pair, window) for pair in pairs] == expected


# -- promtool ---------------------------------------------------------------


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    all_labels = {**LABELS, **labels}
    text = ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
    return {"series": f"{metric}{{{text}}}", "values": values}


def requests(ok_per_min: int, errors_per_min: int, minutes: int) -> list[dict[str, str]]:
    metric = "rampart_http_request_duration_seconds_count"
    common = {"method": "GET", "route": "default", "pod": "checkout-1"}
    return [
        series(metric, f"0+{ok_per_min}x{minutes}", code="200", **common),
        series(metric, f"0+{errors_per_min}x{minutes}", code="503", **common),
    ]


def latency(per_min: int, bucket: str, minutes: int) -> list[dict[str, str]]:
    """Every request lands in ``bucket`` (an upper bound)."""
    metric = "rampart_http_request_duration_seconds_bucket"
    out = []
    for le in ("0.5", "1.0", "2.5", "+Inf"):
        rate = per_min if le == "+Inf" or float(le) >= float(bucket) else 0
        out.append(
            series(
                metric,
                f"0+{rate}x{minutes}",
                le=le,
                method="GET",
                code="200",
                route="default",
                pod="checkout-1",
            )
        )
    return out


def cache(segments: list[tuple[int, int, int]]) -> list[dict[str, str]]:
    """(hits per minute, misses per minute, minutes) after one another."""
    out = []
    for result, index in (("hit", 0), ("miss", 1)):
        value, parts = 0, []
        for segment in segments:
            step, minutes = segment[index], segment[2]
            parts.append(f"{value}+{step}x{minutes - 1}")
            value += step * minutes
        out.append(
            series("rampart_cache_requests_total", " ".join(parts), result=result, pod="checkout-1")
        )
    return out


def circuit(values: str) -> list[dict[str, str]]:
    return [series("rampart_circuit_state", values, pod="checkout-1")]


def backups(success: str, last_success: str) -> list[dict[str, str]]:
    labels = {"backup": "db", "kind": "postgresql"}
    return [
        series("rampart_backup_last_run_success", success, **labels),
        series("rampart_backup_last_success_timestamp_seconds", last_success, **labels),
    ]


def drills(success: str, last_success: str, seconds: str, age: str) -> list[dict[str, str]]:
    labels = {"backup": "checkout-drill-db", "kind": "postgresql"}
    return [
        series("rampart_restore_drill_last_run_success", success, **labels),
        series("rampart_restore_drill_last_success_timestamp_seconds", last_success, **labels),
        series("rampart_restore_drill_restore_duration_seconds", seconds, **labels),
        series("rampart_restore_drill_backup_age_seconds", age, **labels),
    ]


def expected(name: str, value: str, **extra_labels: str) -> dict[str, Any]:
    """The alert as it should fire: its labels, and its annotations with the value filled in."""
    item = rule(name)
    annotations = {
        k: v.replace("{{ $value | humanizePercentage }}", value)
        .replace("{{ $value | humanizeDuration }}", value)
        .replace("{{ $labels.pod }}", extra_labels.get("pod", ""))
        .replace("{{ $labels.backup }}", extra_labels.get("backup", ""))
        for k, v in item["annotations"].items()
    }
    return {"exp_labels": {**item["labels"], **extra_labels}, "exp_annotations": annotations}


# Each scenario: its series, the time to look, and what fires then (absent = silent).
SCENARIOS: dict[str, tuple[list[dict[str, str]], str, dict[str, list[dict[str, Any]]]]] = {
    "errors at 10%": (
        requests(540, 60, 120),
        "60m",
        {
            "RampartHighErrorRate": [expected("RampartHighErrorRate", "10%")],
            "RampartSLOBurnRateFast": [
                expected("RampartSLOBurnRateFast", "10%", slo_objective="99.9")
            ],
            "RampartSLOBurnRateSlow": [
                expected("RampartSLOBurnRateSlow", "10%", slo_objective="99.9")
            ],
        },
    ),
    "errors at 0.5%: only the slow burn": (
        requests(1990, 10, 180),
        "150m",
        {
            "RampartSLOBurnRateSlow": [
                expected("RampartSLOBurnRateSlow", "0.5%", slo_objective="99.9")
            ],
        },
    ),
    "slow responses": (
        requests(600, 0, 60) + latency(600, "2.5", 60),
        "30m",
        {
            "RampartHighLatencyP95": [expected("RampartHighLatencyP95", "2.425s")],
        },
    ),
    "breaker stuck open": (
        requests(600, 0, 60) + circuit("0x10 2x50"),
        "30m",
        {
            "RampartCircuitOpen": [expected("RampartCircuitOpen", "", pod="checkout-1")],
        },
    ),
    "breaker flapping open and half-open": (
        requests(600, 0, 60) + circuit("0x10 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2 1 2x30"),
        "30m",
        {"RampartCircuitOpen": [expected("RampartCircuitOpen", "", pod="checkout-1")]},
    ),
    "cache hit ratio collapses": (
        requests(600, 0, 180) + cache([(540, 60, 120), (60, 540, 60)]),
        "150m",
        {
            "RampartCacheHitRatioCollapse": [expected("RampartCacheHitRatioCollapse", "10%")],
        },
    ),
    "a backup run failed": (
        backups("1x10 0x20", "0+60x30"),
        "25m",
        {"RampartBackupFailed": [expected("RampartBackupFailed", "", backup="db")]},
    ),
    "no good backup for 26h": (
        backups("1x1620", "0x1620"),
        "26h30m",
        {"RampartBackupStale": [expected("RampartBackupStale", "1d 2h 30m 0s", backup="db")]},
    ),
    "a restore drill failed": (
        drills("1x10 0x20", "0+60x10 600x20", "60x30", "3600x30"),
        "25m",
        {
            "RampartRestoreDrillFailed": [
                expected("RampartRestoreDrillFailed", "", backup="checkout-drill-db")
            ]
        },
    ),
    "no successful drill for twice its schedule": (
        drills("1x2940", "0x2940", "60x2940", "3600x2940"),
        "48h30m",
        {
            "RampartRestoreDrillMissing": [
                expected("RampartRestoreDrillMissing", "2d 0h 30m 0s", backup="checkout-drill-db")
            ]
        },
    ),
    "a restore slower than its RTO, of a backup older than its RPO": (
        drills("1x30", "0+60x30", "900x30", "100000x30"),
        "25m",
        {
            "RampartRestoreDrillRTOExceeded": [
                expected("RampartRestoreDrillRTOExceeded", "15m 0s", backup="checkout-drill-db")
            ],
            "RampartRestoreDrillRPOExceeded": [
                expected(
                    "RampartRestoreDrillRPOExceeded", "1d 3h 46m 40s", backup="checkout-drill-db"
                )
            ],
        },
    ),
    "healthy": (
        requests(3998, 2, 180)
        + latency(4000, "0.5", 180)
        + circuit("0x180")
        + cache([(3600, 400, 180)])
        + backups("1x180", "0+60x180")
        + drills("1x180", "0+60x180", "60x180", "3600x180"),
        "170m",
        {},
    ),
    "no traffic at all": (
        requests(0, 0, 180) + latency(0, "0.5", 180) + circuit("0x180") + cache([(0, 0, 180)]),
        "170m",
        {},
    ),
    "breaker briefly open, then closed": (
        requests(600, 0, 60) + circuit("0x10 2x2 0x48"),
        "30m",
        {},
    ),
}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def promtool_suite(tmp_path: Path) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {"groups": manifests()["PrometheusRulecheckout"]["spec"]["groups"]}, sort_keys=False
        )
    )
    tests = []
    for name, (input_series, at, firing) in SCENARIOS.items():
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": input_series,
                # Every alert is checked in every scenario: what is not listed must be silent.
                "alert_rule_test": [
                    {"eval_time": at, "alertname": alert, "exp_alerts": firing.get(alert, [])}
                    for alert in RULE_NAMES
                ],
            }
        )
    suite = tmp_path / "tests.yaml"
    suite.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    return suite


def test_every_alert_has_a_scenario_that_fires_it():
    fired = {alert for _, _, firing in SCENARIOS.values() for alert in firing}
    assert fired == set(RULE_NAMES)


@needs_promtool
def test_rules_pass_promtool_check(tmp_path):
    suite = promtool_suite(tmp_path)
    result = promtool("check", "rules", str(suite.parent / "rules.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # Beside the alerts: seven burn-rate windows, the objective and the SLO window's ratio.
    assert f"SUCCESS: {len(RULE_NAMES) + 9} rules found" in result.stdout


@needs_promtool
def test_alerts_fire_when_they_should_and_only_then(tmp_path):
    suite = promtool_suite(tmp_path)
    result = promtool("test", "rules", str(suite), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_a_shorter_window_and_for_page_in_seconds_and_the_defaults_do_not(tmp_path):
    """alerts.window and alerts.for: one minute of rates, 30 s over the threshold."""
    fast = copy.deepcopy(SERVICE)
    fast["spec"]["alerts"].update({"window": "1m", "for": "30s"})
    groups = {
        "fast": manifests(fast)["PrometheusRulecheckout"]["spec"]["groups"],
        "default": manifests()["PrometheusRulecheckout"]["spec"]["groups"],
    }
    metric = "rampart_http_request_duration_seconds_count"
    common = {"method": "GET", "route": "default", "pod": "checkout-1"}
    # Every 15 s: 60 answered, 30 of them more with 503 (a third fail).
    input_series = [
        series(metric, "0+60x20", code="200", **common),
        series(metric, "0+30x20", code="503", **common),
    ]

    def firing(name: str, at: str) -> list[str]:
        rules = tmp_path / f"{name}.yaml"
        rules.write_text(yaml.safe_dump({"groups": groups[name]}, sort_keys=False))
        suite = tmp_path / f"{name}-{at}.test.yaml"
        alert = {"eval_time": at, "alertname": "RampartHighErrorRate", "exp_alerts": []}
        test = {"interval": "15s", "input_series": input_series, "alert_rule_test": [alert]}
        document = {"rule_files": [rules.name], "evaluation_interval": "15s", "tests": [test]}
        suite.write_text(yaml.safe_dump(document))
        result = promtool("test", "rules", str(suite), cwd=tmp_path)
        # promtool lists what fired when it expected nothing.
        return [] if result.returncode == 0 else [result.stdout + result.stderr]

    assert firing("fast", "30s") == []  # pending for 15 s only
    assert "RampartHighErrorRate" in "".join(firing("fast", "1m"))
    assert (
        "over the last 1m"
        in rule_of(groups["fast"], "RampartHighErrorRate")["annotations"]["description"]
    )
    assert firing("default", "4m") == []  # 5m by default


def rule_of(groups: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for g in groups for r in g["rules"] if r.get("alert") == name)


@pytest.mark.parametrize("label", ["namespace", "hardenedservice", "severity", PROOF_LABEL])
def test_the_labels_routing_and_rollback_match_on_are_the_operators(label):
    # Another tenant's namespace in alerts.labels would roll back that tenant's canary.
    hostile = copy.deepcopy(SERVICE)
    hostile["spec"]["alerts"]["labels"] = {label: "tenant-b", "team": "payments"}
    problems = [str(p) for p in validate(hostile)]
    assert any(p.startswith(f"spec.alerts.labels.{label}: set by the operator") for p in problems)
    # Rendered anyway (as by an operator whose webhook was down): ours win on every rule.
    rules = [
        r
        for m in render(hostile, OperatorSettings(alert_token="s3cret"))
        if m["kind"] == "PrometheusRule"
        for g in m["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert rules
    for rule in rules:
        assert rule["labels"]["namespace"] == "shop"
        assert rule["labels"]["hardenedservice"] == "checkout"
        assert rule["labels"]["severity"] in ("critical", "warning")
        assert rule["labels"]["team"] == "payments"
        assert rule["labels"][PROOF_LABEL] == proof(proof_key("s3cret") or b"", "shop", "checkout")


def test_every_alert_carries_the_proof_of_its_service_only_with_a_token():
    def proofs(resource: dict[str, Any], token: str) -> set[str | None]:
        return {
            r["labels"].get(PROOF_LABEL)
            for m in render(resource, OperatorSettings(alert_token=token))
            if m["kind"] == "PrometheusRule"
            for g in m["spec"]["groups"]
            for r in g["rules"]
            if "alert" in r
        }

    elsewhere = copy.deepcopy(SERVICE)
    elsewhere["metadata"]["namespace"] = "tenant-b"
    ours, theirs = proofs(SERVICE, "s3cret"), proofs(elsewhere, "s3cret")
    assert len(ours) == len(theirs) == 1
    assert ours != theirs
    assert proofs(SERVICE, "another token") != ours  # a new token, new proofs
    assert proofs(SERVICE, "") == {None}  # no key: nothing to prove with
