"""What only a real API server shows: its own validation, admission over TLS, the
real controllers and garbage collector, conflicts, and an operator at rest.

The operator here is a separate process authenticated as the chart's
ServiceAccount, so every call it makes is also a check of the chart's RBAC.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from rampart_operator.admission.keeper import CertKeeper, server_context
from rampart_operator.api import openapi_v3_schema
from rampart_operator.api.openapi import cel_rules
from rampart_operator.kube import KubeClient
from rampart_operator.settings import OperatorSettings

from .conftest import OPERATOR_NAMESPACE, OPERATOR_USER, RELEASE, Operator
from .localcluster import Cluster

EXAMPLES = Path(__file__).parents[1] / "examples"
# Children every HardenedService with alerts and a NetworkPolicy gets.
CHILDREN = (
    ("deployment", ""),
    ("service", ""),
    ("configmap", "-sidecar"),
    ("poddisruptionbudget", ""),
    ("networkpolicy", ""),
    ("prometheusrule", ""),
    ("podmonitor", ""),
)


def hardened_service(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "image": "ghcr.io/acme/hello:1.0.0",
            "replicas": 2,
            "networkPolicy": {"enabled": True},
            "alerts": {"errorRate": 0.05},
            **spec,
        },
    }


def condition(resource: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((resource or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def ready(local: Cluster, name: str, namespace: str, timeout: float = 60) -> dict[str, Any]:
    found: dict[str, Any] = local.wait_for(
        f"{namespace}/{name} Ready",
        lambda: (
            (item := local.get("hardenedservice", name, namespace))
            and condition(item, "Ready").get("status") == "True"
            and item["status"].get("observedGeneration") == item["metadata"]["generation"]
            and item
        ),
        timeout=timeout,
    )
    return found


# The CRD's rules across fields (CEL), whose messages the offline checks share.
CEL_MESSAGES = {rule["message"] for rule in cel_rules(openapi_v3_schema())}


@pytest.mark.parametrize("example", sorted((EXAMPLES / "invalid").glob("*.yaml")), ids=str)
def test_the_api_server_itself_refuses_a_schema_invalid_hardened_service(
    local: Cluster, example: Path
) -> None:
    field, _, reason = example.read_text().splitlines()[0].removeprefix("# ").partition(": ")
    out = local.kubectl("apply", "-f", str(example), check=False)
    assert "created" not in out, out
    # The CRD's schema answered, not our webhook: a user without the operator
    # running is protected all the same.
    assert "denied the request" not in out, out
    # The schema names the field by its path (list items as [0], not .0).
    path = ".".join(part if not part.isdigit() else f"[{part}]" for part in field.split("."))
    assert path.replace(".[", "[") in out, out
    if reason in CEL_MESSAGES:
        # A rule across fields: the API server's CEL says it in the offline check's words.
        assert reason in out, out


def test_the_webhook_called_over_tls_refuses_what_only_it_can_judge(
    local: Cluster, namespace: str
) -> None:
    # The schema cannot see that the application's port is the sidecar's own.
    clash = hardened_service("clash", namespace, port=8000)
    path = f"/apis/rampart.dev/v1alpha1/namespaces/{namespace}/hardenedservices"
    code, status = local.api("POST", path, clash)
    assert code == 422, status
    assert status["message"].startswith(
        'admission webhook "validate.rampart.dev" denied the request'
    ), status
    assert [cause["field"] for cause in status["details"]["causes"]] == ["spec.port"]
    # kubectl shows it as it shows the schema's refusals, field first.
    out = local.kubectl("apply", "-f", "-", input=yaml.safe_dump(clash), check=False)
    assert "spec.port: 8000 is also the sidecar's port" in out, out
    assert local.get("hardenedservice", "clash", namespace) is None


def test_the_ca_bundle_the_operator_wrote_is_what_the_api_server_trusts(
    local: Cluster, operator: Operator
) -> None:
    secret = local.get("secret", f"{RELEASE}-webhook-tls", OPERATOR_NAMESPACE)
    assert secret is not None
    bundle = secret["data"]["ca.crt"]
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        configuration = local.get(kind, RELEASE)
        assert configuration is not None
        for webhook in configuration["webhooks"]:
            assert webhook["clientConfig"]["caBundle"] == bundle
            assert webhook["clientConfig"]["url"].startswith(operator.webhook_url)


def test_helm_test_runs_its_hook_pod_on_the_release(local: Cluster) -> None:
    # kwok completes the hook's pod (no container runs): this proves the chart's
    # test hook is admitted, scheduled and reported; its check runs only on kind.
    result = local.run("helm", "test", RELEASE, "-n", OPERATOR_NAMESPACE, "--timeout", "60s")
    assert "Phase:          Succeeded" in result.stdout, result.stdout


def test_children_come_up_through_the_real_controllers_and_ready_comes_from_them(
    local: Cluster, namespace: str
) -> None:
    local.apply(hardened_service("shop", namespace, replicas=3))
    found = ready(local, "shop", namespace)
    for kind, suffix in CHILDREN:
        child = local.get(kind, f"shop{suffix}", namespace)
        assert child is not None, f"{kind} shop{suffix}"
        owners = child["metadata"]["ownerReferences"]
        assert owners[0]["uid"] == found["metadata"]["uid"]
        assert owners[0]["controller"] is True
    deployment = local.get("deployment", "shop", namespace) or {}
    # The Deployment controller made a ReplicaSet, the scheduler placed its pods
    # on kwok's nodes, and kwok reported them Ready.
    assert deployment["status"]["readyReplicas"] == 3
    pods = json.loads(local.kubectl("get", "pods", "-n", namespace, "-o", "json"))["items"]
    assert len(pods) == 3
    assert all(pod["spec"]["nodeName"].startswith("kwok-node-") for pod in pods)
    # The printer columns read the real status.
    table = local.kubectl("get", "hsvc", "shop", "-n", namespace)
    header, row = table.splitlines()[:2]
    starts = [header.index(title) for title in header.split()]
    cells = [row[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    columns = dict(zip(header.split(), cells, strict=True))
    assert columns["READY"] == "True", table
    assert columns["PHASE"] == "Healthy", table
    assert {c["type"]: c["status"] for c in found["status"]["conditions"]} == {
        "Ready": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }


def test_deleting_a_hardened_service_removes_its_children_through_the_garbage_collector(
    local: Cluster, namespace: str
) -> None:
    local.apply(hardened_service("gone", namespace))
    ready(local, "gone", namespace)
    local.kubectl("delete", "hardenedservice", "gone", "-n", namespace, "--wait=true")

    def children_left() -> list[str]:
        listed = local.kubectl(
            "get",
            "deployments,replicasets,pods,services,configmaps,poddisruptionbudgets,"
            "networkpolicies,prometheusrules,podmonitors",
            "-n",
            namespace,
            "-o",
            "name",
        ).split()
        return [item for item in listed if "kube-root-ca" not in item]

    local.wait_for("every child collected", lambda: not children_left(), timeout=60)


def test_a_namespace_being_deleted_is_left_to_empty(local: Cluster) -> None:
    """The namespace controller deletes the children before their owner: the
    operator must not take that for drift and try to restore them into a
    namespace that refuses new objects."""
    local.kubectl("create", "namespace", "going")
    local.apply(hardened_service("doomed", "going"))
    ready(local, "doomed", "going")
    since = datetime.datetime.now(datetime.UTC)
    local.kubectl("delete", "namespace", "going", "--wait=true", "--timeout=60s")
    refused = [
        event
        for event in local.requests(OPERATOR_USER, since, frozenset({"create"}))
        if (event.get("objectRef") or {}).get("namespace") == "going"
        and event.get("responseStatus", {}).get("code") == 403
    ]
    assert not refused, [(e["objectRef"]["resource"], e["responseStatus"]) for e in refused]


def test_a_hand_edited_or_deleted_child_is_restored(local: Cluster, namespace: str) -> None:
    local.apply(hardened_service("edited", namespace))
    ready(local, "edited", namespace)
    deployment = local.get("deployment", "edited", namespace) or {}
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    local.kubectl(
        "patch",
        "deployment",
        "edited",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(
            [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x:1"}]
        ),
    )
    local.kubectl("delete", "networkpolicy", "edited", "-n", namespace)

    def restored() -> bool:
        live = local.get("deployment", "edited", namespace) or {}
        containers = live["spec"]["template"]["spec"]["containers"]
        return bool(
            containers[0]["image"] == image
            and local.get("networkpolicy", "edited", namespace) is not None
        )

    local.wait_for("image and NetworkPolicy restored", restored, timeout=30)


def test_at_rest_the_operator_writes_nothing_and_leaves_others_fields_alone(
    local: Cluster, namespace: str
) -> None:
    """No hot loop: the API server defaults fields the render leaves out (a
    Deployment's strategy, a Service's clusterIP and sessionAffinity, a pod's
    terminationMessagePath, ...) and drops empty ones; a drift check must take
    neither for drift. And what others add (an annotation by kubectl, a label)
    is theirs: no child is written back over it."""
    local.apply(hardened_service("idle", namespace))
    ready(local, "idle", namespace)
    # The operator's last words on a new HardenedService: its Event, posted after
    # the status that says Ready.
    local.wait_for(
        "the Created Event",
        lambda: local.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector=involvedObject.name=idle,reason=Created",
            "-o",
            "name",
        ).strip(),
    )
    since = datetime.datetime.now(datetime.UTC)
    # The window: six drift checks (one every 5 s), each a full look at every child.
    drift_checks(local, "idle", namespace, since, 6)
    writes = local.writes(OPERATOR_USER, since, namespace)
    assert not writes, f"the operator wrote at rest: {dict(writes)}"
    # It did look at the children: the absence of writes is a verdict.
    assert len(reads_in(local, namespace, since)) >= 8

    since = datetime.datetime.now(datetime.UTC)
    local.kubectl("annotate", "deployment", "idle", "-n", namespace, "team.example/owner=alice")
    local.kubectl("label", "service", "idle", "-n", namespace, "team.example/tier=gold")
    drift_checks(local, "idle", namespace, since, 3)
    # The annotation bumps the Deployment's generation: the status may say so
    # (Ready is False until the controller observed it, as kstatus has it), but
    # no child may be written.
    writes = local.writes(OPERATOR_USER, since, namespace)
    children = {k: n for k, n in writes.items() if k[1] != "events"}
    assert set(children) <= {("patch", "hardenedservices", "status")}, children
    assert len(reads_in(local, namespace, since)) >= 2
    deployment = local.get("deployment", "idle", namespace) or {}
    service = local.get("service", "idle", namespace) or {}
    assert deployment["metadata"]["annotations"]["team.example/owner"] == "alice"
    assert service["metadata"]["labels"]["team.example/tier"] == "gold"


def drift_checks(
    local: Cluster, name: str, namespace: str, since: datetime.datetime, count: int
) -> None:
    """Until the operator has reconciled ``name`` ``count`` times since ``since`` (each
    reconcile reads the HardenedService first), as its audit events show."""

    def looks() -> int:
        return sum(
            1
            for event in local.requests(OPERATOR_USER, since, frozenset({"get"}))
            if (event.get("objectRef") or {}).get("resource") == "hardenedservices"
            and event["objectRef"].get("name") == name
            and event["objectRef"].get("namespace") == namespace
        )

    local.wait_for(
        f"{count} reconciles of {namespace}/{name}", lambda: looks() >= count, timeout=20 * count
    )


def reads_in(local: Cluster, namespace: str, since: datetime.datetime) -> list[dict[str, Any]]:
    """The operator's gets of objects in ``namespace`` since a time."""
    return [
        event
        for event in local.requests(OPERATOR_USER, since, frozenset({"get"}))
        if (event.get("objectRef") or {}).get("namespace") == namespace
    ]


def test_replicas_a_horizontal_pod_autoscaler_set_are_its_own(
    local: Cluster, namespace: str
) -> None:
    local.apply(hardened_service("scaled", namespace, replicas=2))
    ready(local, "scaled", namespace)
    since = datetime.datetime.now(datetime.UTC)
    local.apply(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "scaled", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scaled"},
                # Below its minimum, the HPA controller scales without any metrics.
                "minReplicas": 3,
                "maxReplicas": 6,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80},
                        },
                    }
                ],
            },
        }
    )

    def replicas() -> int:
        return int((local.get("deployment", "scaled", namespace) or {})["spec"]["replicas"])

    local.wait_for("the HPA's 3 replicas", lambda: replicas() == 3, timeout=45)
    drift_checks(local, "scaled", namespace, since, 3)  # and the HPA's write's watch event
    assert replicas() == 3
    patches = local.writes(OPERATOR_USER, since, namespace)[("patch", "deployments", "")]
    assert patches == 0, f"the operator wrote the Deployment {patches} times"
    ready(local, "scaled", namespace)  # Ready counts the HPA's replicas


class _Paused(KubeClient):
    """A real client whose first read of the Secret waits, so another keeper writes
    in between: a certain stale resourceVersion instead of a lucky one."""

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        super().__init__(info)
        self.read = asyncio.Event()
        self.go_on = asyncio.Event()

    async def get(self, api_version: str, kind: str, *args: Any) -> dict[str, Any] | None:
        result = await super().get(api_version, kind, *args)
        if kind == "Secret" and not self.read.is_set():
            self.read.set()
            await self.go_on.wait()
        return result


async def test_a_write_on_a_stale_resource_version_gets_409_and_converges(
    local: Cluster,
) -> None:
    """Two operator replicas renew the webhook certificate at once: the API
    server refuses the second write (409 on its stale resourceVersion), and that
    replica reads and serves the winner's certificate instead of its own."""
    token = local.token(RELEASE, OPERATOR_NAMESPACE)
    info = kopf.ConnectionInfo(server=local.server, ca_path=str(local.ca_file), token=token)
    settings = OperatorSettings(
        namespace=OPERATOR_NAMESPACE,
        webhook_service=f"{RELEASE}-webhook",
        webhook_configuration=RELEASE,
        webhook_secret=f"{RELEASE}-webhook-tls",
    )
    # A year on: the serving certificate is due for renewal, its CA is not.
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=300)
    since = datetime.datetime.now(datetime.UTC)
    slow_client, fast_client = _Paused(info), KubeClient(info)
    slow = CertKeeper(slow_client, settings, server_context(), clock=lambda: later)
    fast = CertKeeper(fast_client, settings, server_context(), clock=lambda: later)
    try:
        behind = asyncio.create_task(slow.check())
        await asyncio.wait_for(slow_client.read.wait(), 10)
        await fast.check()  # renews and writes first
        slow_client.go_on.set()
        await asyncio.wait_for(behind, 20)
    finally:
        await slow_client.close()
        await fast_client.close()
    assert fast.loaded is not None
    assert slow.loaded == fast.loaded
    secret = local.get("secret", f"{RELEASE}-webhook-tls", OPERATOR_NAMESPACE) or {}
    assert base64.b64decode(secret["data"]["tls.crt"]).decode() == fast.loaded
    refused = [
        event
        for event in local.requests(OPERATOR_USER, since, frozenset({"patch"}))
        if event.get("responseStatus", {}).get("code") == 409
        and (event.get("objectRef") or {}).get("resource") == "secrets"
    ]
    assert len(refused) == 1, refused


def test_every_example_is_accepted_by_the_api_server_and_the_webhook(local: Cluster) -> None:
    examples = [
        path
        for path in sorted(EXAMPLES.glob("*.yaml"))
        if any(
            (doc or {}).get("kind") == "HardenedService"
            for doc in yaml.safe_load_all(path.read_text())
        )
    ]
    assert examples
    namespaces = {
        doc["metadata"].get("namespace", "default")
        for path in examples
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    for name in namespaces:
        local.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    for path in examples:
        out = local.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
        assert "created (server dry run)" in out, f"{path.name}: {out}"
