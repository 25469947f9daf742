"""How the operator writes children, on the real API server: by server-side
apply, created without reading them first, changed when the spec changes,
never merged into an object someone else owns, and stalled (touching nothing)
on what it cannot do.

The operator is the session's process, authenticated as the chart's
ServiceAccount; what it did is read back from the API server's audit log.
"""

from __future__ import annotations

import datetime
import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .conftest import OPERATOR_USER, RELEASE, Operator
from .localcluster import Cluster
from .test_control_plane import condition, hardened_service, ready

pytestmark = pytest.mark.integration


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def operator_requests(
    local: Cluster, namespace: str, since: datetime.datetime, *verbs: str
) -> list[dict[str, Any]]:
    """The operator's audited requests on objects in ``namespace``, oldest first."""
    return [
        event
        for event in local.requests(OPERATOR_USER, since, frozenset(verbs))
        if (event.get("objectRef") or {}).get("namespace") == namespace
    ]


def status(local: Cluster, name: str, namespace: str) -> dict[str, Any]:
    return dict(((local.get("hardenedservice", name, namespace) or {}).get("status")) or {})


def stalled(local: Cluster, name: str, namespace: str) -> str:
    """The Stalled condition's message once it is True."""
    message: str = local.wait_for(
        f"{namespace}/{name} Stalled",
        lambda: (
            (found := condition(local.get("hardenedservice", name, namespace), "Stalled"))
            and found.get("status") == "True"
            and found["message"]
        ),
        timeout=30,
    )
    return message


def patch_spec(local: Cluster, name: str, namespace: str, spec: dict[str, Any]) -> None:
    local.kubectl(
        "patch",
        "hardenedservice",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": spec}),
    )


def events(local: Cluster, namespace: str) -> list[dict[str, Any]]:
    listed = json.loads(local.kubectl("get", "events", "-n", namespace, "-o", "json"))
    return list(listed["items"])


def test_a_new_hardened_service_gets_its_children_applied_without_reading_them(
    local: Cluster, namespace: str
) -> None:
    since = now()
    local.apply(hardened_service("fresh", namespace, replicas=3))
    found = ready(local, "fresh", namespace)
    requests = operator_requests(local, namespace, since, "get", "patch", "create")
    children = {"deployments", "services", "configmaps", "poddisruptionbudgets"}
    children |= {"networkpolicies", "prometheusrules", "podmonitors"}
    first = {}
    for event in requests:
        ref = event["objectRef"]
        if ref["resource"] in children and ref.get("name", "").startswith("fresh"):
            first.setdefault((ref["resource"], ref["name"]), event)
    assert {resource for resource, _ in first} == children
    for (resource, name), event in first.items():
        # Applied, not read first: nothing of its own can exist yet.
        assert event["verb"] == "patch", (resource, name, event["verb"])
        assert "fieldManager=rampart" in event["requestURI"], event["requestURI"]
        assert event["responseStatus"]["code"] == 201, (resource, event["responseStatus"])
    # No sweep of the kinds it does not render either.
    swept = {e["objectRef"]["resource"] for e in requests if e["verb"] == "get"}
    assert not swept & {"httproutes", "ingresses", "cronjobs"}, swept
    # Every field of the children is the field manager's, by apply.
    code, deployment = local.api("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/fresh")
    assert code == 200, deployment
    managers = {
        (m["manager"], m["operation"])
        for m in deployment["metadata"]["managedFields"]
        if "f:spec" in (m.get("fieldsV1") or {})
    }
    assert ("rampart", "Apply") in managers, managers
    assert not {m for m in managers if m[0] == "rampart" and m[1] != "Apply"}, managers
    # Kubernetes 1.35: the sidecar is a native one (an init container that stays).
    pod = deployment["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["app"]
    assert [(c["name"], c.get("restartPolicy")) for c in pod["initContainers"]] == [
        ("rampart-sidecar", "Always")
    ]
    # One Event for all that was created, after the status.
    created = local.wait_for(
        "the Created Event",
        lambda: [e for e in events(local, namespace) if e["reason"] == "Created"],
    )
    assert len(created) == 1, created
    named = set(created[0]["message"].removeprefix("created ").split(", "))
    assert named >= {
        "ConfigMap fresh-sidecar",
        "Service fresh",
        "Deployment fresh",
        "PodDisruptionBudget fresh",
        "NetworkPolicy fresh",
    }
    assert created[0]["involvedObject"]["uid"] == found["metadata"]["uid"]


def test_a_spec_change_is_applied_and_what_it_no_longer_asks_for_is_removed(
    local: Cluster, namespace: str
) -> None:
    def spec(env: list[dict[str, str]], labels: dict[str, str], **more: Any) -> dict[str, Any]:
        app = {"name": "app", "image": "ghcr.io/acme/hello:1.0.0", "env": env}
        found = hardened_service(
            "changing",
            namespace,
            template={"spec": {"containers": [app]}},
            alerts={"errorRate": 0.05, "labels": labels},
            **more,
        )
        del found["spec"]["image"]
        return found

    env = [{"name": "MODE", "value": "fast"}, {"name": "DEBUG", "value": "1"}]
    local.apply(spec(env, {"team": "shop", "tier": "gold"}))
    ready(local, "changing", namespace)
    rule = local.get("prometheusrule", "changing", namespace) or {}
    assert rule["metadata"]["labels"]["tier"] == "gold"
    sidecar = local.get("configmap", "changing-sidecar", namespace) or {}

    local.apply(
        spec(env[:1], {"team": "shop"}, replicas=5, sidecar={"timeouts": {"request": "3s"}})
    )

    def applied() -> bool:
        deployment = local.get("deployment", "changing", namespace) or {}
        app = next(
            c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app"
        )
        rule = local.get("prometheusrule", "changing", namespace) or {}
        return bool(
            deployment["spec"]["replicas"] == 5
            and [e["name"] for e in app.get("env", [])] == ["MODE"]
            and "tier" not in rule["metadata"]["labels"]
        )

    local.wait_for("the new spec applied, the dropped label and variable gone", applied)
    after = local.get("configmap", "changing-sidecar", namespace) or {}
    assert "request: 3s" in after["data"]["sidecar.yaml"]
    assert after["data"] != sidecar["data"]
    found = ready(local, "changing", namespace)
    assert found["status"]["observedGeneration"] == 2


def test_alerts_and_monitoring_come_and_go_with_the_spec(local: Cluster, namespace: str) -> None:
    local.apply(hardened_service("watched", namespace))
    ready(local, "watched", namespace)
    assert local.get("prometheusrule", "watched", namespace) is not None
    assert local.get("podmonitor", "watched", namespace) is not None
    patch_spec(
        local,
        "watched",
        namespace,
        {"alerts": {"enabled": False}, "monitoring": {"podMonitor": {"enabled": False}}},
    )
    local.wait_for(
        "PrometheusRule and PodMonitor deleted",
        lambda: (
            local.get("prometheusrule", "watched", namespace) is None
            and local.get("podmonitor", "watched", namespace) is None
        ),
    )
    assert local.get("deployment", "watched", namespace) is not None


def test_a_missing_secret_stalls_until_it_exists(local: Cluster, namespace: str) -> None:
    cache = {"cache": {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}}}
    local.apply(hardened_service("cached", namespace, sidecar=cache))
    assert "spec.sidecar.cache: Secret redis not found" in stalled(local, "cached", namespace)
    assert status(local, "cached", namespace)["phase"] == "Failed"
    assert local.get("deployment", "cached", namespace) is None
    local.kubectl(
        "create", "secret", "generic", "redis", "-n", namespace, "--from-literal=url=redis://r:6379"
    )
    # Seen by the next drift check: the operator does not watch Secrets.
    ready(local, "cached", namespace)


def test_an_object_someone_else_owns_is_never_written(local: Cluster, namespace: str) -> None:
    local.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "taken", "namespace": namespace, "labels": {"team": "other"}},
            "spec": {"ports": [{"port": 1234}]},
        }
    )
    before = local.get("service", "taken", namespace) or {}
    since = now()
    local.apply(hardened_service("taken", namespace))
    message = stalled(local, "taken", namespace)
    assert "Service taken exists and is not owned by this HardenedService" in message, message
    after = local.get("service", "taken", namespace) or {}
    # Not merged into: the create-only apply was refused (409) and nothing else was sent.
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    writes = [
        (e["verb"], e["responseStatus"]["code"])
        for e in operator_requests(local, namespace, since, "patch", "create", "update")
        if e["objectRef"]["resource"] == "services" and e["objectRef"].get("name") == "taken"
    ]
    assert writes, "the operator never tried"
    assert all(code == 409 for _, code in writes), writes


@pytest.fixture
def without_validation(local: Cluster) -> Iterator[None]:
    """The validating webhook away, as when its failurePolicy is Ignore and the
    operator is down, or for what was admitted before the chart was installed.
    Put back as it was afterwards (the operator keeps its caBundle)."""
    kind = "validatingwebhookconfiguration"
    saved = local.get(kind, RELEASE)
    assert saved is not None, "the chart's validating webhook is missing"
    local.kubectl("delete", kind, RELEASE)
    try:
        yield
    finally:
        meta = saved["metadata"]
        for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation"):
            meta.pop(field, None)
        local.kubectl("create", "-f", "-", input=yaml.safe_dump(saved))
        # In effect again before the next test: a clash is refused once more.
        clash = yaml.safe_dump(hardened_service("probe", "default", port=8000))
        local.wait_for(
            "the webhook refusing again",
            lambda: (
                "is also the sidecar's port"
                in local.kubectl("apply", "--dry-run=server", "-f", "-", input=clash, check=False)
            ),
            timeout=30,
        )


def test_a_spec_only_the_webhook_would_refuse_stalls_and_touches_nothing(
    local: Cluster, namespace: str, without_validation: None
) -> None:
    # The sidecar's own port: the CRD's schema cannot see the clash.
    local.apply(hardened_service("clash", namespace, port=8000))
    message = stalled(local, "clash", namespace)
    assert "spec.port" in message, message
    assert status(local, "clash", namespace)["phase"] == "Failed"
    assert local.get("deployment", "clash", namespace) is None
    assert local.get("configmap", "clash-sidecar", namespace) is None
    warnings = local.wait_for(
        "a Stalled Warning",
        lambda: [e for e in events(local, namespace) if e["type"] == "Warning"],
    )
    assert warnings[0]["reason"] == "Stalled"
    assert "spec.port" in warnings[0]["message"]

    # A change to one that runs: stalled, and its children left as they were.
    local.apply(hardened_service("running", namespace))
    ready(local, "running", namespace)
    deployment = local.get("deployment", "running", namespace) or {}
    patch_spec(local, "running", namespace, {"replicas": 9, "port": 8000})
    assert "spec.port" in stalled(local, "running", namespace)
    after = local.get("deployment", "running", namespace) or {}
    # The spec untouched (the controllers' status writes move the resourceVersion).
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert after["spec"] == deployment["spec"]


def away_from_now(minute: int) -> str:
    """A daily schedule twelve hours from now. The runs this test reports are in the
    past, so the real CronJob controller counts every schedule since as missed; it starts
    the latest one only within the rendered startingDeadlineSeconds (an hour). With fixed
    times (02:00, 04:30) it did for the hour after each, every day, and the run it started
    replaced the one reported: the test failed from 02:00 to 03:00 and 04:30 to 05:30 UTC."""
    hour = (datetime.datetime.now(datetime.UTC).hour + 12) % 24
    return f"{minute} {hour} * * *"


def test_backups_become_cron_jobs_and_report_their_runs(local: Cluster, namespace: str) -> None:
    backup = {
        "schedule": away_from_now(0),
        "sources": [
            {"name": "db", "postgres": {"urlSecretRef": {"name": "db", "key": "url"}}},
            {"name": "files", "path": {"claimName": "files"}},
        ],
        "destination": {"pvc": "backups"},
        "encryption": {"keySecretRef": {"name": "backup-key", "key": "key"}},
        "drill": {"schedule": away_from_now(30), "rto": "15m"},
    }
    local.apply(hardened_service("saved", namespace, backup=backup))
    assert "spec.backup: Secret backup-key not found" in stalled(local, "saved", namespace)
    for secret in ("db", "backup-key"):
        local.kubectl(
            "create",
            "secret",
            "generic",
            secret,
            "-n",
            namespace,
            "--from-literal=url=postgres://db/shop",
            f"--from-literal=key={os.urandom(32).hex()}",  # a weak key is refused
        )
    ready(local, "saved", namespace)
    for source in ("db", "files"):
        assert local.get("cronjob", f"saved-backup-{source}", namespace) is not None
        # The API server took the drill's pod: its database a native sidecar.
        drill = local.get("cronjob", f"saved-drill-{source}", namespace)
        assert drill is not None
        drill_pod = drill["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        if source == "db":
            assert drill_pod["initContainers"][0]["restartPolicy"] == "Always"
    # No run is due before 02:00: report one as the CronJob controller would.
    ran = {"lastScheduleTime": "2026-11-23T02:00:00Z", "lastSuccessfulTime": "2026-11-23T02:01:00Z"}
    drilled = {"lastScheduleTime": "2026-11-23T04:30:00Z"}  # and a drill that failed
    for job, report in (("saved-backup-db", ran), ("saved-drill-db", drilled)):
        local.kubectl(
            "patch",
            "cronjob",
            job,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": report}),
        )

    def outcomes() -> dict[str, tuple[str, str]]:
        backups = status(local, "saved", namespace).get("backups") or []
        return {b["source"]: (b["lastOutcome"], b["lastDrill"]["lastOutcome"]) for b in backups}

    local.wait_for(
        "the db backup's run and drill in the status",
        lambda: outcomes() == {"db": ("Succeeded", "Failed"), "files": ("NeverRun", "NeverRun")},
        timeout=30,
    )
    without_drill = {**backup, "drill": None}  # a merge patch removes with null
    patch_spec(
        local, "saved", namespace, {"backup": {**without_drill, "sources": backup["sources"][:1]}}
    )
    local.wait_for(
        "the files CronJob and the drills deleted",
        lambda: (
            not any(
                local.get("cronjob", job, namespace)
                for job in ("saved-backup-files", "saved-drill-db", "saved-drill-files")
            )
        ),
    )
    assert local.get("cronjob", "saved-backup-db", namespace) is not None


def test_a_hardened_service_without_status_takes_over_its_own_children(
    local: Cluster, namespace: str
) -> None:
    """As when a run created the children and stopped before writing any status:
    each create-only apply gets 409, the child is read, found its own, kept."""
    local.apply(hardened_service("orphan", namespace))
    found = ready(local, "orphan", namespace)
    since = now()
    local.kubectl(
        "patch",
        "hardenedservice",
        "orphan",
        "-n",
        namespace,
        "--subresource=status",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/status"}]',
    )
    again = local.wait_for(
        "a status again",
        lambda: (s := status(local, "orphan", namespace)).get("children") and s,
        timeout=30,
    )
    assert condition({"status": again}, "Stalled").get("status") == "False", again
    refused = [
        e["objectRef"]["resource"]
        for e in operator_requests(local, namespace, since, "patch")
        if e["responseStatus"]["code"] == 409
    ]
    assert "deployments" in refused, refused
    deployment = local.get("deployment", "orphan", namespace) or {}
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == found["metadata"]["uid"]


def test_a_status_without_its_list_of_children_looks_for_every_kind(
    local: Cluster, namespace: str
) -> None:
    local.apply(hardened_service("forgetful", namespace))
    found = ready(local, "forgetful", namespace)
    owner = {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "name": "forgetful",
        "uid": found["metadata"]["uid"],
    }
    # Left from an earlier spec with a Gateway API canary, and not in the status's list.
    local.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "forgetful", "namespace": namespace, "ownerReferences": [owner]},
            "spec": {"parentRefs": [{"name": "public"}]},
        }
    )
    since = now()
    local.wait_for(
        "two drift checks",
        lambda: (
            len(
                [
                    e
                    for e in operator_requests(local, namespace, since, "get")
                    if e["objectRef"]["resource"] == "deployments"
                ]
            )
            >= 2
        ),
        timeout=30,
    )
    assert local.get("httproute", "forgetful", namespace) is not None  # not looked for
    local.kubectl(
        "patch",
        "hardenedservice",
        "forgetful",
        "-n",
        namespace,
        "--subresource=status",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/status/children"}]',
    )
    local.wait_for(
        "the HTTPRoute deleted",
        lambda: local.get("httproute", "forgetful", namespace) is None,
        timeout=30,
    )
    local.wait_for("the list back", lambda: status(local, "forgetful", namespace).get("children"))


def test_the_operator_counts_what_it_did_answers_liveness_and_never_logs_its_token(
    local: Cluster, namespace: str, operator: Operator
) -> None:
    before = operator.metric(
        "rampart_operator_child_changes_total", {"kind": "Deployment", "verb": "created"}
    )
    local.apply(hardened_service("counted", namespace))
    ready(local, "counted", namespace)
    after = operator.metric(
        "rampart_operator_child_changes_total", {"kind": "Deployment", "verb": "created"}
    )
    assert after == (before or 0) + 1
    assert operator.metric("rampart_operator_reconciliations_total", {"result": "applied"})
    with urllib.request.urlopen(operator.liveness_url, timeout=5) as answer:  # noqa: S310
        assert answer.status == 200
    kubeconfig = yaml.safe_load(operator.kubeconfig.read_text())
    token = kubeconfig["users"][0]["user"]["token"]
    assert len(token) > 100
    assert token not in operator.log_text()
    assert token[-40:] not in operator.log_text()  # nor its signature


def test_what_an_edit_drops_goes_even_when_the_edit_first_stalled(
    local: Cluster, namespace: str
) -> None:
    """The edit drops a label and asks for a Secret that is not there yet: the
    stall marks the generation observed, not applied; once the Secret exists,
    every child is applied and the label goes."""
    local.apply(
        hardened_service(
            "patient", namespace, alerts={"errorRate": 0.05, "labels": {"team": "a", "tier": "b"}}
        )
    )
    ready(local, "patient", namespace)
    cache = {"cache": {"redis": {"urlSecretRef": {"name": "later", "key": "url"}}}}
    local.apply(
        hardened_service(
            "patient",
            namespace,
            alerts={"errorRate": 0.05, "labels": {"team": "a"}},
            sidecar=cache,
        )
    )
    assert "Secret later not found" in stalled(local, "patient", namespace)
    local.kubectl(
        "create", "secret", "generic", "later", "-n", namespace, "--from-literal=url=redis://r:6379"
    )
    local.wait_for(
        "the dropped label gone",
        lambda: (
            "tier"
            not in ((local.get("prometheusrule", "patient", namespace) or {})["metadata"]["labels"])
        ),
        timeout=30,
    )
    found = ready(local, "patient", namespace)
    assert found["status"]["appliedGeneration"] == found["metadata"]["generation"]
