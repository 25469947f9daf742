"""The Helm chart: lint, render for several value sets, validate what renders, refuse bad values.

Rendered objects are validated offline against the Kubernetes 1.33 schemas
and the published CRDs; the chart's names and settings are checked against
the code that uses them (the operator's settings, its webhook routes, the
resources it touches), so the chart and the operator cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from rampart_operator.admission.server import admission_app
from rampart_operator.crd import crd
from rampart_operator.handlers import CHILD_RESOURCES
from rampart_operator.settings import OperatorSettings
from tests.chart import CHART, NAMESPACE, ROOT, find, helm, manifests, render, third_party_crds

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ha": {"replicaCount": 3},
    "cert-manager": {"webhooks": {"certManager": {"enabled": True}}},
    "cluster-issuer": {
        "webhooks": {
            "certManager": {
                "enabled": True,
                "issuerRef": {"name": "corporate-ca", "kind": "ClusterIssuer"},
            }
        }
    },
    "no-webhooks-no-alerts": {"webhooks": {"enabled": False}, "alerts": {"enabled": False}},
    "namespaced-ha": {"replicaCount": 2, "watchNamespaces": ["shop", "billing"]},
    "out-of-cluster": {
        "outOfCluster": {"enabled": True, "webhookUrl": "https://127.0.0.1:9443"},
        "metrics": {"serviceMonitor": {"enabled": True}},
    },
    "monitoring": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
        "alerts": {"alertmanagerUrl": "http://alertmanager.monitoring:9093"},
    },
}


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """openAPIV3Schema by (apiVersion, kind) from the chart's and the published CRDs."""
    schemas = {}
    paths = [*third_party_crds(), *(CHART / "crds").glob("*.yaml")]
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_value_set_lints_strictly_and_renders_valid_objects(
    name: str, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS[name]))
    lint = helm("lint", "--strict", str(CHART), "--values", str(values))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schemas = crd_schemas()
    objects = manifests(VALUE_SETS[name])
    assert objects
    for manifest in objects:
        key = (manifest["apiVersion"], manifest["kind"])
        if key in schemas:
            jsonschema.validate(manifest, schemas[key])
        elif manifest["apiVersion"].startswith("cert-manager.io/"):
            assert manifest["spec"], "cert-manager's CRDs are not here; the shape is checked below"
        else:
            kubernetes_validate.validate(manifest, "1.33", strict=True)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicaCount": 0}, "/replicaCount"),
        ({"replicaCount": "2"}, "/replicaCount"),
        ({"webhooks": {"injection": {"failurePolicy": "Sometimes"}}}, "/webhooks/injection"),
        ({"webhooks": {"port": 70000}}, "/webhooks/port"),
        ({"operator": {"sidecarMode": "mesh"}}, "/operator/sidecarMode"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"alerts": {"alertmanagerUrl": "alertmanager:9093"}}, "/alerts/alertmanagerUrl"),
        ({"webhooks": {"certManager": {"duration": "a year"}}}, "/webhooks/certManager/duration"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"replicas": 2}, "replicas"),  # a typo is an error, not a silently ignored key
        ({"outOfCluster": {"enabled": True}}, "/outOfCluster/webhookUrl"),
        ({"outOfCluster": {"webhookUrl": "http://127.0.0.1:9443"}}, "/outOfCluster/webhookUrl"),
        ({"outOfCluster": {"webhookUrl": "https://h:1/validate"}}, "/outOfCluster/webhookUrl"),
    ],
)
def test_bad_values_are_refused_with_their_field(values: dict[str, Any], field: str) -> None:
    result = render(values)
    assert result.returncode != 0
    assert field in result.stderr


def test_out_of_cluster_the_webhooks_call_the_url_and_no_operator_pod_is_installed() -> None:
    objects = manifests(VALUE_SETS["out-of-cluster"])
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor"}
    # What the operator needs to run elsewhere with the chart's rights is there.
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role"} <= kinds
    for kind, path in (
        ("ValidatingWebhookConfiguration", "/validate"),
        ("MutatingWebhookConfiguration", "/inject"),
    ):
        (webhook,) = find(objects, kind)["webhooks"]
        assert webhook["clientConfig"] == {"url": f"https://127.0.0.1:9443{path}"}
    with_cert_manager = {
        **VALUE_SETS["out-of-cluster"],
        "webhooks": {"certManager": {"enabled": True}},
    }
    refused = render(with_cert_manager)
    assert refused.returncode != 0
    assert "outOfCluster and webhooks.certManager exclude each other" in refused.stderr


def test_the_charts_crd_is_the_operators_own() -> None:
    packaged = (CHART / "crds" / "hardenedservice.yaml").read_text()
    assert packaged == (ROOT / "crds" / "hardenedservice.yaml").read_text()
    assert yaml.safe_load(packaged) == crd()


def operator_settings(objects: list[dict[str, Any]]) -> OperatorSettings:
    """What the operator reads from the environment the chart gives it."""
    deployment = find(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {}
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            assert variable["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
            env[variable["name"]] = NAMESPACE
    env.pop("RAMPART_ALERT_TOKEN_FILE", None)  # a mounted file, checked below
    return OperatorSettings.from_env(env)


def test_the_operator_is_told_the_names_the_chart_gives() -> None:
    objects = manifests()
    settings = operator_settings(objects)
    service = find(objects, "Service")
    assert settings.webhook_service == service["metadata"]["name"]
    assert settings.namespace == NAMESPACE
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["alerts"]["port"] == settings.alert_port
    assert ports["metrics"]["port"] == settings.metrics_port
    container = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert settings.sidecar_image == container["image"]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container_ports["webhooks"] == settings.webhook_port
    routes = {r.resource.canonical for r in admission_app(settings, None).router.routes()}  # type: ignore[arg-type,union-attr]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        configuration = find(objects, kind)
        assert configuration["metadata"]["name"] == settings.webhook_configuration
        for webhook in configuration["webhooks"]:
            target = webhook["clientConfig"]["service"]
            assert target["name"] == settings.webhook_service
            assert target["namespace"] == NAMESPACE
            assert ports["webhooks"]["port"] == target["port"]
            assert target["path"] in routes
    role = find(objects, "Role")
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    assert named[0]["resourceNames"] == [settings.webhook_secret]
    token_mount = next(m for m in container["volumeMounts"] if m["name"] == "alert-token")
    token_file = next(
        v["value"] for v in container["env"] if v["name"] == "RAMPART_ALERT_TOKEN_FILE"
    )
    assert token_file.startswith(token_mount["mountPath"] + "/")
    secret = find(objects, "Secret")
    assert len(secret["data"]["token"]) > 40  # 40 random characters, base64


def test_cert_manager_provides_the_certificate_and_the_ca_bundle() -> None:
    objects = manifests(VALUE_SETS["cert-manager"])
    settings = operator_settings(objects)
    certificate = find(objects, "Certificate")
    assert certificate["spec"]["secretName"] == settings.webhook_secret
    assert f"{settings.webhook_service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"]["name"] == find(objects, "Issuer")["metadata"]["name"]
    assert settings.webhook_cert_dir
    mounts = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0][
        "volumeMounts"
    ]
    assert {
        "name": "webhook-tls",
        "mountPath": settings.webhook_cert_dir,
        "readOnly": True,
    } in mounts
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = find(objects, kind)["metadata"]["annotations"]
        assert (
            annotations["cert-manager.io/inject-ca-from"]
            == f"{NAMESPACE}/{settings.webhook_secret}"
        )
    # The operator writes neither the Secret nor caBundle then: it is not allowed to.
    assert not [o for o in objects if o["kind"] == "Role"]
    rules = cluster_wide_rules(objects)
    assert not [
        r
        for r in rules
        if "patch" in r["verbs"] and "admissionregistration.k8s.io" in r["apiGroups"]
    ]
    issuer = manifests(VALUE_SETS["cluster-issuer"])
    assert find(issuer, "Certificate")["spec"]["issuerRef"] == {
        "name": "corporate-ca",
        "kind": "ClusterIssuer",
    }
    assert not [o for o in issuer if o["kind"] == "Issuer"]


def granted(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules:
        if (
            group in rule["apiGroups"]
            and resource in rule["resources"]
            and not rule.get("resourceNames")
        ):
            verbs |= set(rule["verbs"])
    return verbs


def cluster_wide_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules of every ClusterRole a ClusterRoleBinding grants cluster-wide."""
    bound = {o["roleRef"]["name"] for o in objects if o["kind"] == "ClusterRoleBinding"}
    return [
        rule
        for o in objects
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] in bound
        for rule in o["rules"]
    ]


def test_rbac_grants_what_the_operator_touches_and_no_more() -> None:
    rules = cluster_wide_rules(manifests())
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    managed = {"get", "list", "watch", "create", "patch", "delete"}
    for group, _, plural in CHILD_RESOURCES:
        assert granted(rules, group, plural) == managed, plural
    assert granted(rules, "rampart.dev", "hardenedservices") >= {"get", "list", "watch", "patch"}
    assert "patch" in granted(rules, "rampart.dev", "hardenedservices/status")
    # Read one by one, never listed or watched: a Secret's value is none of kopf's business.
    assert granted(rules, "", "secrets") == {"get"}
    assert granted(rules, "", "namespaces") == {"get"}
    assert "create" in granted(rules, "", "events")
    assert "patch" not in granted(
        rules, "admissionregistration.k8s.io", "mutatingwebhookconfigurations"
    )
    named = [r for r in rules if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"],
            "resourceNames": [OperatorSettings().webhook_configuration],
            "verbs": ["patch"],
        }
    ]


def test_with_watch_namespaces_nothing_is_written_or_read_outside_them() -> None:
    objects = manifests(VALUE_SETS["namespaced-ha"])
    cluster_wide = cluster_wide_rules(objects)
    writes = {"create", "update", "patch", "delete", "deletecollection"}
    for rule in cluster_wide:
        if writes & set(rule["verbs"]):  # only the webhook configurations, by name
            assert rule["resourceNames"] == [OperatorSettings().webhook_configuration], rule
            assert rule["apiGroups"] == ["admissionregistration.k8s.io"]
    assert not any("secrets" in rule["resources"] for rule in cluster_wide)
    bindings = [
        o for o in objects if o["kind"] == "RoleBinding" and "workloads" in o["roleRef"]["name"]
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["billing", "shop"]
    (workloads,) = {b["roleRef"]["name"] for b in bindings}
    granted_there = find(objects, "ClusterRole", workloads)["rules"]
    managed = {"get", "list", "watch", "create", "patch", "delete"}
    for group, _, plural in CHILD_RESOURCES:
        assert granted(granted_there, group, plural) == managed, plural
    assert granted(granted_there, "", "secrets") == {"get"}
    assert granted(granted_there, "kopf.dev", "kopfpeerings") >= {"get", "patch"}


def test_the_operator_may_change_only_its_webhooks_ca_bundle_and_certificate_secret() -> None:
    objects = manifests()
    policy = find(objects, "ValidatingAdmissionPolicy")
    binding = find(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    (condition,) = policy["spec"]["matchConditions"]
    account = find(objects, "ServiceAccount")["metadata"]["name"]
    assert f'"system:serviceaccount:{NAMESPACE}:{account}"' in condition["expression"]
    assert (
        f'"{OperatorSettings().webhook_secret}"' in policy["spec"]["validations"][0]["expression"]
    )
    # The API server proves the rest (e2e/test_admission.py); with cert-manager the
    # operator writes neither, so nothing is there to limit.
    kinds = {o["kind"] for o in manifests(VALUE_SETS["cert-manager"])}
    assert "ValidatingAdmissionPolicy" not in kinds


def test_the_injector_never_sees_the_control_plane_or_the_operator_and_never_blocks_pods() -> None:
    objects = manifests({"webhooks": {"excludeNamespaces": ["legacy"]}})
    (webhook,) = find(objects, "MutatingWebhookConfiguration")["webhooks"]
    (expression,) = webhook["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name"
    assert expression["operator"] == "NotIn"
    assert {"kube-system", NAMESPACE, "legacy"} <= set(expression["values"])
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    (validating,) = find(objects, "ValidatingWebhookConfiguration")["webhooks"]
    assert validating["failurePolicy"] == "Fail"
    pod = find(objects, "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["rampart.dev/inject"] == "false"


def test_ha_runs_peered_replicas_spread_and_protected() -> None:
    objects = manifests(VALUE_SETS["ha"])
    deployment = find(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=rampart" in args
    assert find(objects, "ClusterKopfPeering")["metadata"]["name"] == "rampart"
    assert find(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    single = manifests()
    assert not [o for o in single if o["kind"] in ("PodDisruptionBudget", "ClusterKopfPeering")]
    assert not [
        a
        for a in find(single, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        if a.startswith("--peering")
    ]
    namespaced = manifests(VALUE_SETS["namespaced-ha"])
    assert sorted(o["metadata"]["namespace"] for o in namespaced if o["kind"] == "KopfPeering") == [
        "billing",
        "shop",
    ]


def test_helm_test_checks_the_running_release() -> None:
    objects = manifests()
    (hook,) = [
        o for o in objects if (o["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"
    ]
    assert hook["kind"] == "Pod"
    script = hook["spec"]["containers"][0]["command"][-1]
    assert f"rampart-webhook.{NAMESPACE}.svc" in script
    assert "/healthz" in script
    assert "/metrics" in script


def test_the_notes_name_what_the_release_created() -> None:
    result = helm(
        "install", "rampart", str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
        "--set", "clusterWide=true",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    objects = manifests()
    assert f"rollout status deployment/{find(objects, 'Deployment')['metadata']['name']}\n" in notes
    service = find(objects, "Service")
    alerts = next(p for p in service["spec"]["ports"] if p["name"] == "alerts")
    receiver = (
        f"https://{service['metadata']['name']}.{NAMESPACE}.svc:{alerts['port']}/alertmanager"
    )
    assert receiver in notes  # HTTPS by default, under a name the certificate carries
    assert f"get secret {operator_settings(objects).webhook_secret}" in notes  # its CA
    assert f"get secret {find(objects, 'Secret')['metadata']['name']} " in notes


def test_the_network_is_closed_by_default_around_the_operator_and_its_services() -> None:
    objects = manifests()
    settings = operator_settings(objects)
    assert settings.alert_tls is True
    assert settings.monitoring_namespace == "monitoring"
    ports = {
        p["name"]
        for p in find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    policy = find(objects, "NetworkPolicy")["spec"]
    assert (
        policy["podSelector"]["matchLabels"]
        == find(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert policy["policyTypes"] == ["Ingress"]
    webhooks, monitored = policy["ingress"]
    assert webhooks == {"ports": [{"port": "webhooks", "protocol": "TCP"}]}  # the API server
    assert {p["port"] for p in monitored["ports"]} == {"metrics", "alerts"}
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} <= ports
    assert "health" not in {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    (namespace, helm_test) = monitored["from"]
    assert namespace["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    hook = next(o for o in objects if o["kind"] == "Pod")
    assert helm_test["podSelector"]["matchLabels"].items() <= hook["metadata"]["labels"].items()
    opted_out = manifests({"alerts": {"tls": False}, "policy": {"monitoringNamespace": "obs"}})
    assert operator_settings(opted_out).alert_tls is False
    assert operator_settings(opted_out).monitoring_namespace == "obs"
    assert "NetworkPolicy" not in {
        o["kind"] for o in manifests({"networkPolicy": {"enabled": False}})
    }


def test_the_chart_asks_where_the_operator_works_and_never_assumes_the_whole_cluster() -> None:
    from tests.chart import render

    for values, refusal in (
        ({"clusterWide": False}, "say where the operator works"),
        ({"clusterWide": True, "watchNamespaces": ["shop"]}, "contradict each other"),
    ):
        result = render(values)
        assert result.returncode != 0
        assert refusal in result.stderr
    namespaced = manifests({"watchNamespaces": ["shop"]})
    assert not [
        o
        for o in namespaced
        if o["kind"] == "ClusterRoleBinding" and o["roleRef"]["name"].endswith("-workloads")
    ]
    assert operator_settings(namespaced).namespaces == ("shop",)
