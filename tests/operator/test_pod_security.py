"""#22 item 2: a HardenedService cannot run a pod its namespace's Pod Security would refuse.

The template is checked once hardened (what the user left unset is filled), at
the operator's level (``RAMPART_POD_SECURITY``), and every refusal names its field.
"""

from __future__ import annotations

from typing import Any

import pytest

from rampart_operator.settings import OperatorSettings, SettingsError
from rampart_operator.validation import Limits, validate

from .test_analysis_allowlist import review


def with_template(pod: dict[str, Any], container: dict[str, Any] | None = None) -> dict[str, Any]:
    app = {"name": "app", "image": "ghcr.io/acme/app:1", **(container or {})}
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": "app", "namespace": "tenant-a"},
        "spec": {"template": {"spec": {"containers": [app], **pod}}},
    }


def problems(resource: dict[str, Any], level: str = "restricted", **limits: Any) -> list[str]:
    return [str(p) for p in validate(resource, Limits(pod_security=level, **limits))]


def test_a_template_that_leaves_security_to_the_operator_passes():
    plain = with_template(
        {"volumes": [{"name": "tmp", "emptyDir": {}}]},
        {"ports": [{"containerPort": 8080}], "securityContext": {"runAsUser": 10001}},
    )
    assert problems(plain) == []


C = "spec.template.spec.containers[0]"
ESCAPES = [
    ({}, {"securityContext": {"privileged": True}}, f"{C}.securityContext.privileged"),
    ({"hostPID": True}, {}, "spec.template.spec.hostPID"),
    ({"hostNetwork": True}, {}, "spec.template.spec.hostNetwork"),
    ({"hostIPC": True}, {}, "spec.template.spec.hostIPC"),
    (
        {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
        {},
        "spec.template.spec.volumes[0].hostPath",
    ),
    ({}, {"ports": [{"containerPort": 80, "hostPort": 80}]}, f"{C}.ports[0].hostPort"),
    (
        {},
        {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
        f"{C}.securityContext.capabilities.add",
    ),
    (
        {"securityContext": {"seccompProfile": {"type": "Unconfined"}}},
        {},
        "spec.template.spec.securityContext.seccompProfile.type",
    ),
    (
        {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
        {},
        "spec.template.spec.securityContext.sysctls[0]",
    ),
]
RESTRICTED_ONLY = [
    ({}, {"securityContext": {"runAsUser": 0}}, f"{C}.securityContext.runAsUser"),
    ({}, {"securityContext": {"runAsNonRoot": False}}, f"{C}.securityContext.runAsNonRoot"),
    (
        {},
        {"securityContext": {"allowPrivilegeEscalation": True}},
        f"{C}.securityContext.allowPrivilegeEscalation",
    ),
    (
        {},
        {"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
        f"{C}.securityContext.capabilities.drop",
    ),
    (
        {"volumes": [{"name": "nfs", "nfs": {"server": "n", "path": "/"}}]},
        {},
        "spec.template.spec.volumes[0]",
    ),
]


@pytest.mark.parametrize(("pod", "container", "field"), ESCAPES + RESTRICTED_ONLY)
def test_each_way_out_is_refused_with_its_field(pod, container, field):
    found = problems(with_template(pod, container))
    assert any(p.startswith(field + ":") for p in found), found
    assert all("Pod Security 'restricted'" in p for p in found)


@pytest.mark.parametrize(("pod", "container", "field"), ESCAPES)
def test_baseline_refuses_the_host_and_privilege_escapes(pod, container, field):
    assert any(
        p.startswith(field + ":") for p in problems(with_template(pod, container), "baseline")
    )


@pytest.mark.parametrize(("pod", "container", "field"), RESTRICTED_ONLY)
def test_baseline_allows_what_only_restricted_refuses(pod, container, field):
    assert problems(with_template(pod, container), "baseline") == []


def test_privileged_is_an_administrators_choice_and_allows_anything():
    resource = with_template({"hostPID": True}, {"securityContext": {"privileged": True}})
    assert problems(resource, "privileged") == []


def test_the_canary_template_is_checked_too():
    resource = with_template({})
    resource["spec"]["canary"] = {
        "steps": [{"weight": 10}],
        "template": {"spec": {"containers": [{"name": "app", "image": "a:2"}], "hostPID": True}},
    }
    assert any(p.startswith("spec.canary.template.spec.hostPID:") for p in problems(resource))


def test_service_accounts_only_as_the_administrator_allows():
    resource = with_template({"serviceAccountName": "cluster-admin-ish"})
    assert problems(resource) == []  # no list: any
    found = problems(resource, service_accounts=("catalog",))
    assert found == [
        "spec.template.spec.serviceAccountName: cluster-admin-ish is not a service account "
        "this operator allows (RAMPART_SERVICE_ACCOUNTS): catalog"
    ]
    allowed = with_template({"serviceAccountName": "catalog"})
    assert problems(allowed, service_accounts=("catalog",)) == []


def test_the_level_is_a_setting_with_three_values():
    assert OperatorSettings.from_env({}).pod_security == "restricted"
    assert (
        OperatorSettings.from_env({"RAMPART_POD_SECURITY": "baseline"}).pod_security == "baseline"
    )
    with pytest.raises(SettingsError, match="RAMPART_POD_SECURITY: 'none'"):
        OperatorSettings.from_env({"RAMPART_POD_SECURITY": "none"})
    settings = OperatorSettings.from_env({"RAMPART_SERVICE_ACCOUNTS": "catalog, orders"})
    assert settings.service_accounts == ("catalog", "orders")


async def test_the_admission_webhook_refuses_a_privileged_template():
    resource = with_template({"hostPID": True}, {"securityContext": {"privileged": True}})
    answer = await review(OperatorSettings(), resource)
    assert answer["allowed"] is False
    fields = {cause["field"] for cause in answer["status"]["details"]["causes"]}
    assert {"spec.template.spec.hostPID", f"{C}.securityContext.privileged"} <= fields
