"""The API: the CRD file, the examples, and what validation refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rampart_common.sidecar_settings import SidecarSettings
from rampart_operator.api import openapi_v3_schema, parse_spec
from rampart_operator.api.openapi import cel_rules
from rampart_operator.api.reference import reference
from rampart_operator.crd import crd
from rampart_operator.readiness import deployment_ready
from rampart_operator.reconcile import contains, leave_scale
from rampart_operator.status import Observation, compute_status
from rampart_operator.validation import Problem, validate

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))


def resource(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": spec,
    }


def test_the_committed_crd_is_the_generated_one():
    committed = yaml.safe_load((ROOT / "crds" / "hardenedservice.yaml").read_text())
    assert committed == crd(), "run: .venv/bin/rampart-operator crd > crds/hardenedservice.yaml"


def test_the_committed_api_reference_is_the_generated_one():
    committed = (ROOT / "docs" / "api.md").read_text()
    assert committed == reference(), "run: .venv/bin/rampart-operator api-reference > docs/api.md"


def test_every_cel_rule_has_an_invalid_example_refused_offline_with_its_message():
    """One definition per rule: the CRD's CEL and the offline check share the message,
    and examples/invalid/ holds a resource breaking each (the e2e tier has the real API
    server refuse every one of them)."""
    cel = {rule["message"] for rule in cel_rules(openapi_v3_schema())}
    covered = set()
    for path in INVALID:
        field, _, message = path.read_text().splitlines()[0].removeprefix("# ").partition(": ")
        if message in cel:
            problems = validate(yaml.safe_load(path.read_text()))
            assert Problem(field, message) in problems, (path.name, problems)
            covered.add(message)
    assert covered == cel, "no example in examples/invalid/ breaks these"


def test_crd_sidecar_fields_are_the_sidecar_files_fields():
    """Names cannot drift: every settings field is in the CRD, less the operator's own."""
    sidecar = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["sidecar"]["properties"]
    assert set(sidecar) == {f.alias or n for n, f in SidecarSettings.model_fields.items()}
    assert "url" not in sidecar["upstream"]["properties"]
    assert "urlSecretRef" in sidecar["cache"]["properties"]["redis"]["properties"]
    retries = sidecar["retries"]["properties"]
    assert retries["perTryTimeout"]["type"] == "string"
    assert retries["perTryTimeout"]["nullable"] is True
    assert "Default: 2." in retries["attempts"]["description"]


def test_crd_has_status_printer_columns_and_short_name():
    version = crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Weight",
        "Ready",
        "Age",
    ]
    assert crd()["spec"]["names"]["shortNames"] == ["hsvc"]
    rules = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    assert any("has(self.image)" in rule["rule"] for rule in rules)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "HardenedService":
            assert validate(doc) == []


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, which is what kustomize applies to a custom resource (no merge keys)."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


GITOPS = ROOT / "examples" / "gitops"


@pytest.mark.parametrize("overlay", ["staging", "production"])
def test_gitops_example_overlays_give_valid_services(overlay):
    base = yaml.safe_load((GITOPS / "base" / "hardenedservice.yaml").read_text())
    assert validate(base) == []
    kustomization = yaml.safe_load(
        (GITOPS / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    assert kustomization["resources"] == ["../../base"]
    result = base
    for patch in kustomization["patches"]:
        result = merge_patch(
            result, yaml.safe_load((GITOPS / "overlays" / overlay / patch["path"]).read_text())
        )
    assert validate(result) == []
    assert result["spec"]["canary"]["image"] == "ghcr.io/acme/catalog:2.4.0"
    assert result["spec"]["image"] == "ghcr.io/acme/catalog:2.3.0"  # the version it starts from


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_invalid_example_is_refused_naming_its_field(path):
    text = path.read_text()
    expected_path = text.splitlines()[0].removeprefix("# ").split(":")[0]
    problems = validate(yaml.safe_load(text))
    assert problems, "accepted"
    assert expected_path in [p.path for p in problems], problems


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        ({}, "spec.image", "set spec.image or spec.template"),
        (
            {"image": "a", "template": {"spec": {"containers": [{"name": "a"}]}}},
            "spec.image",
            "not both",
        ),
        ({"template": {"spec": {}}}, "spec.template.spec.containers", "at least one"),
        (
            {"template": {"spec": {"containers": [{"name": "rampart-sidecar", "image": "x"}]}}},
            "spec.template.spec.containers.0.name",
            "sidecar",
        ),
        ({"image": "a", "port": 8000}, "spec.port", "spec.sidecar.listen"),
        (
            {"image": "a", "port": 7000, "sidecar": {"admin": "0.0.0.0:7000"}},
            "spec.port",
            "spec.sidecar.admin",
        ),
        (
            {"image": "a", "podDisruptionBudget": {"maxUnavailable": 1, "minAvailable": 1}},
            "spec.podDisruptionBudget",
            "not both",
        ),
        (
            {"image": "a", "sidecar": {"timeouts": {"request": "0s"}}},
            "spec.sidecar.timeouts.request",
            "greater than 0",
        ),
        (
            {"image": "a", "sidecar": {"retries": {"backoff": {"base": "1s", "max": "1ms"}}}},
            "spec.sidecar.retries.backoff",
            "max must not be below base",
        ),
    ],
)
def test_rules_beyond_the_schema(spec, path, fragment):
    problems = validate(resource(**spec))
    assert any(p.path == path and fragment in p.message for p in problems), problems


def test_the_models_default_what_the_crd_defaults():
    spec = parse_spec(resource(image="a"))
    assert (spec.replicas, spec.port) == (2, 8080)
    assert (spec.service.port, spec.service.type) == (80, "ClusterIP")
    assert spec.sidecar is None  # the sidecar applies its own
    properties = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    served = properties["spec"]["properties"]
    assert (served["replicas"]["default"], served["port"]["default"]) == (2, 8080)
    assert served["service"]["properties"]["port"]["default"] == 80


def test_contains_ignores_what_the_server_adds():
    desired = {"spec": {"replicas": 2, "ports": [{"port": 80}]}}
    assert contains(
        {"spec": {"replicas": 2, "ports": [{"port": 80, "protocol": "TCP"}], "strategy": {}}},
        desired,
    )
    assert not contains({"spec": {"replicas": 3, "ports": [{"port": 80}]}}, desired)
    assert not contains({"spec": {"replicas": 2, "ports": []}}, desired)
    assert not contains({"spec": {"replicas": 2}}, desired)


def test_contains_takes_a_field_the_server_omitted_for_its_zero_value():
    # The API server leaves out the zero values of omitempty fields: that is no
    # drift (taking it for one patched a Deployment at every drift check).
    desired = {"spec": {"env": [], "hostNetwork": False, "value": "", "args": ["a"]}}
    assert contains({"spec": {"args": ["a"]}}, desired)
    assert not contains({"spec": {}}, desired)  # args is not a zero value
    assert not contains({"spec": {"args": ["a"], "env": [{"name": "X"}]}}, desired)
    assert not contains({}, {"spec": {"replicas": 0, "selector": {"app": "x"}}})


def test_replicas_last_written_through_the_scale_subresource_are_left_to_the_scaler():
    desired = {"kind": "Deployment", "spec": {"replicas": 2, "paused": False}}

    def live(*managers: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"managedFields": list(managers)}, "spec": {"replicas": 5}}

    hpa = {
        "manager": "kube-controller-manager",
        "subresource": "scale",
        "fieldsV1": {"f:spec": {"f:replicas": {}}},
    }
    ours = {"manager": "rampart", "fieldsV1": {"f:spec": {"f:template": {}}}}
    assert leave_scale(desired, live(ours, hpa)) == {
        "kind": "Deployment",
        "spec": {"paused": False},
    }
    # Our own write took the field back (an update moves it off the scaler's entry).
    assert leave_scale(desired, live(ours)) == desired
    # Another subresource, or another kind, is no scaler.
    status = {**hpa, "subresource": "status"}
    assert leave_scale(desired, live(status)) == desired
    assert leave_scale({**desired, "kind": "Service"}, live(hpa))["spec"]["replicas"] == 2


def test_deployment_readiness():
    assert deployment_ready(None)[0] is False
    rolled = {
        "metadata": {"generation": 3},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 3, "updatedReplicas": 2, "availableReplicas": 2},
    }
    assert deployment_ready(rolled) == (True, "2 of 2 replicas available")
    stale = {**rolled, "status": {**rolled["status"], "observedGeneration": 2}}
    assert deployment_ready(stale)[0] is False
    short = {**rolled, "status": {**rolled["status"], "availableReplicas": 1}}
    assert deployment_ready(short) == (False, "1 of 2 replicas available, 2 updated")


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_status_is_kstatus_shaped():
    progressing = compute_status(Observation(4, workload_message="0 of 2"), None)
    assert progressing["phase"] == "Progressing"
    assert progressing["observedGeneration"] == 4
    assert conditions(progressing) == {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
    ready = compute_status(Observation(4, workload_ready=True), progressing)
    assert ready["phase"] == "Healthy"
    assert conditions(ready) == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    stalled = compute_status(Observation(5, problems=["spec.port: clash"]), ready)
    assert stalled["phase"] == "Failed"
    assert conditions(stalled)["Stalled"] == "True"
    assert "spec.port: clash" in stalled["conditions"][2]["message"]


def test_transition_times_change_only_on_transitions():
    first = compute_status(Observation(1), None)
    first["conditions"][0]["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    again = compute_status(Observation(2), first)
    assert again["conditions"][0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    flipped = compute_status(Observation(2, workload_ready=True), first)
    assert flipped["conditions"][0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


# What a CRD's openAPIV3Schema may say (apiextensions v1 JSONSchemaProps).
SCHEMA_KEYS = {
    "type",
    "description",
    "properties",
    "items",
    "required",
    "enum",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "uniqueItems",
    "nullable",
    "default",
    "additionalProperties",
    "anyOf",
    "allOf",
    "oneOf",
    "not",
    "multipleOf",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
    "title",
    "example",
}


def test_the_crd_schema_says_only_what_the_api_server_reads():
    # An unknown keyword (pydantic's own "ge", say) is pruned by the API server, so the
    # CRD applied differs from the file: server-side applies of it then conflict.
    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("properties",) and isinstance(value, dict):
                    for name, child in value.items():
                        walk(child, f"{path}.{name}")
                    continue
                assert key in SCHEMA_KEYS, f"{path}: {key}"
                if key in ("items", "additionalProperties", "not"):
                    walk(value, f"{path}[]")
                elif key in ("anyOf", "allOf", "oneOf"):
                    for child in value:
                        walk(child, path)

    for version in crd()["spec"]["versions"]:
        walk(version["schema"]["openAPIV3Schema"], version["name"])
