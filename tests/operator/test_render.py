"""The pure render functions, on the shipped examples."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from rampart_common.sidecar_settings import settings_from_mapping
from rampart_operator.render import render
from rampart_operator.render.sidecar import SIDECAR_NAME
from rampart_operator.schema import to_json_schema
from rampart_operator.settings import OperatorSettings, mode_for_server

from .test_alerts import crd_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / name).read_text())
    doc["metadata"]["uid"] = "1234-uid"
    return doc


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def pod(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]


HARDENED = [path.name for path in EXAMPLES if "kind: HardenedService" in path.read_text()]


@pytest.mark.parametrize("version", ["1.29", "1.33"])
@pytest.mark.parametrize("mode", ["native", "container"])
@pytest.mark.parametrize("example", HARDENED)
def test_every_rendered_object_is_valid_kubernetes(example, mode, version):
    for manifest in render(load(example), OperatorSettings(sidecar_mode=mode)):
        if manifest["kind"] in THIRD_PARTY_KINDS:
            schema = to_json_schema(crd_schema(THIRD_PARTY_KINDS[manifest["kind"]]))
            errors = jsonschema.Draft202012Validator(schema).iter_errors(manifest)
            assert [e.message for e in errors] == [], manifest["kind"]
        else:
            kubernetes_validate.validate(manifest, version, strict=True)


THIRD_PARTY_KINDS = {
    "PrometheusRule": "monitoring.coreos.com_prometheusrules.yaml",
    "PodMonitor": "monitoring.coreos.com_podmonitors.yaml",
    "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
    "HTTPRoute": "gateway.networking.k8s.io_httproutes.yaml",
}


def test_children_have_names_labels_and_owner_references():
    manifests = render(load("checkout.yaml"), OperatorSettings())
    assert [m["kind"] for m in manifests] == [
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    for manifest in manifests:
        meta = manifest["metadata"]
        assert meta["namespace"] == "shop"
        assert meta["name"] in ("checkout", "checkout-sidecar")
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "rampart"
        assert meta["labels"]["rampart.dev/hardenedservice"] == "checkout"
        (owner,) = meta["ownerReferences"]
        assert owner == {
            "apiVersion": "rampart.dev/v1alpha1",
            "kind": "HardenedService",
            "name": "checkout",
            "uid": "1234-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    assert render(load("checkout.yaml"), OperatorSettings()) == manifests  # deterministic


def test_native_sidecar_is_a_restartable_init_container():
    spec = pod(render(load("checkout.yaml"), OperatorSettings(sidecar_mode="native")))
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == SIDECAR_NAME
    assert sidecar["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["containers"]] == ["app"]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert sidecar["image"] == OperatorSettings().sidecar_image
    assert sidecar["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"memory": "128Mi"},
    }


@pytest.mark.parametrize(
    ("version", "mode"),
    [
        ({"major": "1", "minor": "33"}, "native"),
        ({"major": "1", "minor": "29+"}, "native"),
        ({"major": "1", "minor": "28"}, "container"),
        ({"major": "2", "minor": "0"}, "native"),
        ({"major": "1", "minor": "x"}, "container"),
    ],
)
def test_auto_mode_follows_the_server_version(version, mode):
    assert mode_for_server(version) == mode


def test_auto_renders_native_offline():
    assert OperatorSettings().sidecar_mode == "auto"
    assert "initContainers" in pod(render(load("minimal.yaml"), OperatorSettings()))


def test_regular_container_mode():
    spec = pod(render(load("checkout.yaml"), OperatorSettings(sidecar_mode="container")))
    assert [c["name"] for c in spec["containers"]] == [SIDECAR_NAME, "app"]
    assert "initContainers" not in spec
    assert "restartPolicy" not in spec["containers"][0]


@pytest.mark.parametrize("mode", ["native", "container"])
def test_kubectl_logs_and_exec_land_in_the_app(mode):
    deployment = by_kind(render(load("checkout.yaml"), OperatorSettings(sidecar_mode=mode)))
    template = deployment["Deployment"]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/default-container"] == "app"


def test_a_default_container_the_user_chose_stays():
    chosen = load("catalog-template.yaml")
    metadata = chosen["spec"]["template"].setdefault("metadata", {})
    metadata.setdefault("annotations", {})["kubectl.kubernetes.io/default-container"] = "mine"
    template = by_kind(render(chosen, OperatorSettings()))["Deployment"]["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"] == "mine"


def test_secrets_reach_the_sidecar_as_env_never_in_the_config_map():
    manifests = by_kind(render(load("checkout.yaml"), OperatorSettings()))
    file = yaml.safe_load(manifests["ConfigMap"]["data"]["sidecar.yaml"])
    assert "url" not in file["cache"]["redis"]
    assert "urlSecretRef" not in file["cache"]["redis"]
    assert "adminTokenSecretRef" not in file["cache"]
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in pod(list(manifests.values()))["initContainers"][0]["env"]
    }
    assert env == {
        "RAMPART_CACHE_REDIS_URL": {"name": "redis", "key": "url"},
        "RAMPART_CACHE_ADMIN_TOKEN": {"name": "rampart-cache-admin", "key": "token"},
    }


def test_config_map_is_a_valid_sidecar_file_pointing_at_the_app():
    manifests = by_kind(render(load("catalog-template.yaml"), OperatorSettings()))
    file = yaml.safe_load(manifests["ConfigMap"]["data"]["sidecar.yaml"])
    settings = settings_from_mapping(file)
    assert settings.upstream.url == "http://127.0.0.1:9000"
    assert settings.timeouts.request == 10.0


def test_config_changes_roll_the_pods():
    original = load("minimal.yaml")
    changed = copy.deepcopy(original)
    changed["spec"]["sidecar"] = {"timeouts": {"request": "3s"}}

    def annotation(resource: dict[str, Any]) -> str:
        deployment = by_kind(render(resource, OperatorSettings()))["Deployment"]
        return str(
            deployment["spec"]["template"]["metadata"]["annotations"]["rampart.dev/sidecar-config"]
        )

    assert annotation(original) != annotation(changed)
    assert annotation(original) == annotation(copy.deepcopy(original))


def test_restricted_defaults_fill_only_what_the_user_left_unset():
    spec = pod(render(load("catalog-template.yaml"), OperatorSettings()))
    app = spec["containers"][0]["securityContext"]
    assert app["runAsUser"] == 10001  # the user's
    assert app == {
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["serviceAccountName"] == "catalog"
    assert spec["automountServiceAccountToken"] is False
    user_set = load("catalog-template.yaml")
    user_set["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {
        "readOnlyRootFilesystem": False,
        "capabilities": {"add": ["NET_BIND_SERVICE"]},
    }
    app = pod(render(user_set, OperatorSettings()))["containers"][0]["securityContext"]
    assert app["readOnlyRootFilesystem"] is False
    assert app["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}


def test_user_template_is_kept():
    deployment = by_kind(render(load("catalog-template.yaml"), OperatorSettings()))["Deployment"]
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "catalog"
    app = template["spec"]["containers"][0]
    assert app["env"] == [{"name": "LOG_LEVEL", "value": "info"}]
    assert {v["name"] for v in template["spec"]["volumes"]} == {"tmp", "rampart-config"}
    assert deployment["spec"]["replicas"] == 3
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()


def test_service_goes_through_the_sidecar_and_policies_follow_the_spec():
    manifests = by_kind(render(load("checkout.yaml"), OperatorSettings()))
    (port,) = manifests["Service"]["spec"]["ports"]
    assert port["targetPort"] == "rampart-http"
    assert port["port"] == 80
    policy = manifests["NetworkPolicy"]["spec"]
    assert [rule["ports"][0]["port"] for rule in policy["ingress"]] == [8000, 9901]
    assert policy["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }
    assert manifests["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    minimal = by_kind(render(load("minimal.yaml"), OperatorSettings()))
    # On by default: the sidecar's port from anyone, the admin port from the
    # administrator's monitoring namespace only, the app's port from nobody.
    default = minimal["NetworkPolicy"]["spec"]
    assert default["ingress"] == [
        {"ports": [{"port": 8000, "protocol": "TCP"}]},
        {
            "ports": [{"port": 9901, "protocol": "TCP"}],
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
        },
    ]
    elsewhere = by_kind(render(load("minimal.yaml"), OperatorSettings(monitoring_namespace="obs")))
    assert elsewhere["NetworkPolicy"]["spec"]["ingress"][1]["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "obs"}
    }
    nobody = by_kind(render(load("minimal.yaml"), OperatorSettings(monitoring_namespace="")))
    assert nobody["NetworkPolicy"]["spec"]["ingress"] == default["ingress"][:1]
    opted_out = load("minimal.yaml")
    opted_out["spec"]["networkPolicy"] = {"enabled": False}
    assert "NetworkPolicy" not in by_kind(render(opted_out, OperatorSettings()))
    assert minimal["Deployment"]["spec"]["replicas"] == 2  # the CRD's default
    no_pdb = load("minimal.yaml")
    no_pdb["spec"]["podDisruptionBudget"] = {"enabled": False}
    assert "PodDisruptionBudget" not in by_kind(render(no_pdb, OperatorSettings()))


def test_a_canary_analysed_by_prometheus_brings_its_pod_monitor():
    """Its built-in checks select on labels only the PodMonitor's relabelings add."""
    base = {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u"},
        "spec": {"image": "ghcr.io/acme/web:1", "canary": {"steps": [{"weight": 50}]}},
    }
    kinds = {m["kind"] for m in render(base, OperatorSettings())}
    assert "PodMonitor" not in kinds  # no analysis, no monitoring asked for
    analysed = copy.deepcopy(base)
    analysed["spec"]["canary"]["analysis"] = {"prometheus": {"url": "http://prometheus:9090"}}
    monitors = [m for m in render(analysed, OperatorSettings()) if m["kind"] == "PodMonitor"]
    assert len(monitors) == 1
    relabeled = {
        r["targetLabel"] for r in monitors[0]["spec"]["podMetricsEndpoints"][0]["relabelings"]
    }
    assert relabeled >= {"hardenedservice", "track"}
    off = copy.deepcopy(analysed)
    off["spec"]["monitoring"] = {"podMonitor": {"enabled": False}}  # scraped some other way
    assert "PodMonitor" not in {m["kind"] for m in render(off, OperatorSettings())}
