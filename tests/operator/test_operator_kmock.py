"""The operator against the kmock emulator: create, update, drift, bad input, API errors."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from rampart_operator.handlers import drift_delay
from tests.operator.conftest import HSVC, eventually

pytestmark = pytest.mark.integration

NS = "shop"


def hardened(name: str = "checkout", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        # kopf patches with a test of resourceVersion; kmock keeps it as given.
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "1",
        },
        "spec": {"image": "ghcr.io/acme/checkout:1", "replicas": 3, **spec},
    }


def obj(cluster, resource: str, name: str) -> dict[str, Any] | None:
    # Indexing, not `in`: kmock 0.8's __contains__ does not parse string resource keys.
    try:
        found = cluster.objects[resource, NS, name]
    except KeyError:
        return None
    return None if found.deleted else dict(found.raw)


def status(cluster, name: str = "checkout") -> dict[str, Any]:
    return obj(cluster, HSVC, name).get("status") or {}


async def test_create_gives_every_child(cluster, operator):
    cluster.objects[HSVC, NS, "checkout"] = hardened(networkPolicy={"enabled": True})
    deployment = await eventually(lambda: obj(cluster, "apps/v1/deployments", "checkout"))
    for resource, name in [
        ("v1/configmaps", "checkout-sidecar"),
        ("v1/services", "checkout"),
        ("policy/v1/poddisruptionbudgets", "checkout"),
        ("networking.k8s.io/v1/networkpolicies", "checkout"),
    ]:
        await eventually(lambda r=resource, n=name: obj(cluster, r, n))
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-checkout"
    # kmock says it is Kubernetes 1.26: too old for native sidecars, so "auto"
    # chose a regular container.
    pod = deployment["spec"]["template"]["spec"]
    assert operator.settings.sidecar_mode == "container"
    assert [c["name"] for c in pod["containers"]] == ["rampart-sidecar", "app"]
    assert "initContainers" not in pod
    current = await eventually(lambda: status(cluster).get("phase") and status(cluster))
    assert current["phase"] == "Progressing"  # no controller here makes the pods available
    assert {c["type"]: c["status"] for c in current["conditions"]}["Reconciling"] == "True"
    assert {c["kind"] for c in current["children"]} >= {"Deployment", "Service", "ConfigMap"}

    def events() -> list[dict[str, Any]]:
        return [
            dict(o.raw)
            for key, o in cluster.objects.items()
            if key[0].plural == "events" and not o.deleted
        ]

    # Events are posted after the status is written: one for all that was created.
    created = await eventually(lambda: [e for e in events() if e["reason"] == "Created"])
    assert len(created) == 1
    named = created[0]["message"].removeprefix("created ").split(", ")
    assert set(named) >= {
        "ConfigMap checkout-sidecar",
        "Service checkout",
        "Deployment checkout",
        "PodDisruptionBudget checkout",
        "NetworkPolicy checkout",
    }
    assert {e["involvedObject"]["name"] for e in events()} == {"checkout"}


async def api(cluster, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    """A call to the emulator over HTTP, as kubectl would make it (watchers see it)."""
    async with (
        aiohttp.ClientSession() as client,
        client.request(
            method,
            str(cluster.url).rstrip("/") + path,
            json=body,
            headers={"Content-Type": "application/merge-patch+json"} if body is not None else {},
        ) as response,
    ):
        return response.status


HSVC_PATH = f"/apis/rampart.dev/v1alpha1/namespaces/{NS}/hardenedservices"


async def create_and_settle(cluster, resource: dict[str, Any]) -> None:
    cluster.objects[HSVC, NS, resource["metadata"]["name"]] = resource
    await eventually(lambda: status(cluster, resource["metadata"]["name"]).get("phase"))


async def test_spec_change_updates_children(cluster, operator):
    await create_and_settle(cluster, hardened())
    before = obj(cluster, "v1/configmaps", "checkout-sidecar")
    changed = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 5, "sidecar": {"timeouts": {"request": "3s"}}},
    }
    assert await api(cluster, "PATCH", f"{HSVC_PATH}/checkout", changed) == 200
    await eventually(
        lambda: obj(cluster, "apps/v1/deployments", "checkout")["spec"]["replicas"] == 5
    )
    after = obj(cluster, "v1/configmaps", "checkout-sidecar")
    assert "request: 3s" in after["data"]["sidecar.yaml"]
    assert after != before
    await eventually(lambda: status(cluster).get("observedGeneration") == 2)


@pytest.mark.drift_interval(3600)  # so only the watch on children can restore anything
async def test_deleted_child_comes_back_and_hand_edits_are_undone(cluster, operator):
    await create_and_settle(cluster, hardened())
    assert await api(cluster, "DELETE", f"/api/v1/namespaces/{NS}/services/checkout") == 200
    # The operator may have recreated it already: the history shows the deletion.
    assert None in cluster.objects["v1/services", NS, "checkout"].history
    await eventually(lambda: obj(cluster, "v1/services", "checkout"), timeout=5)

    edit = {"spec": {"replicas": 0}}
    assert (
        await api(cluster, "PATCH", f"/apis/apps/v1/namespaces/{NS}/deployments/checkout", edit)
        == 200
    )
    assert obj(cluster, "apps/v1/deployments", "checkout")["spec"]["replicas"] == 0
    # Seen through the watch on children, not the (hour-long, here) drift timer.
    await eventually(
        lambda: obj(cluster, "apps/v1/deployments", "checkout")["spec"]["replicas"] == 3, timeout=5
    )


async def test_invalid_spec_stalls_and_touches_nothing(cluster, operator):
    cluster.objects[HSVC, NS, "broken"] = hardened("broken", port=8000)
    current = await eventually(
        lambda: status(cluster, "broken").get("phase") and status(cluster, "broken")
    )
    stalled = {c["type"]: c for c in current["conditions"]}["Stalled"]
    assert stalled["status"] == "True"
    assert "spec.port" in stalled["message"]
    assert current["phase"] == "Failed"
    assert obj(cluster, "apps/v1/deployments", "broken") is None
    assert obj(cluster, "v1/configmaps", "broken-sidecar") is None
    warnings = await eventually(
        lambda: [
            dict(o.raw)
            for key, o in cluster.objects.items()
            if key[0].plural == "events" and o.raw.get("type") == "Warning"
        ]
    )
    assert warnings[0]["reason"] == "Stalled"
    assert "spec.port" in warnings[0]["message"]


async def test_invalid_update_leaves_existing_children_alone(cluster, operator):
    await create_and_settle(cluster, hardened())
    deployment = obj(cluster, "apps/v1/deployments", "checkout")
    bad = {
        "metadata": {"generation": 2},
        "spec": {"replicas": 9, "sidecar": {"retries": {"attempts": 99}}},
    }
    assert await api(cluster, "PATCH", f"{HSVC_PATH}/checkout", bad) == 200
    await eventually(lambda: status(cluster).get("phase") == "Failed")
    message = {c["type"]: c for c in status(cluster)["conditions"]}["Stalled"]["message"]
    assert "spec.sidecar.retries.attempts" in message
    assert obj(cluster, "apps/v1/deployments", "checkout") == deployment  # untouched


async def test_missing_secret_stalls_until_it_exists(cluster, operator):
    cache = {"cache": {"redis": {"urlSecretRef": {"name": "redis", "key": "url"}}}}
    cluster.objects[HSVC, NS, "cached"] = hardened("cached", sidecar=cache)
    await eventually(lambda: status(cluster, "cached").get("phase") == "Failed")
    assert "Secret redis not found" in str(status(cluster, "cached")["conditions"])
    assert obj(cluster, "apps/v1/deployments", "cached") is None
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "redis", "namespace": NS},
        "data": {"url": "eA=="},
    }
    async with (
        aiohttp.ClientSession() as client,
        client.post(
            str(cluster.url).rstrip("/") + f"/api/v1/namespaces/{NS}/secrets", json=secret
        ) as response,
    ):
        assert response.status == 200
    await eventually(lambda: obj(cluster, "apps/v1/deployments", "cached"), timeout=5)


async def test_objects_owned_by_someone_else_are_never_overwritten(cluster, operator):
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "checkout", "namespace": NS, "labels": {"team": "other"}},
        "spec": {"ports": [{"port": 1234}]},
    }
    cluster.objects["v1/services", NS, "checkout"] = foreign
    cluster.objects[HSVC, NS, "checkout"] = hardened()
    await eventually(lambda: status(cluster).get("phase") == "Failed")
    assert "not owned by this HardenedService" in str(status(cluster)["conditions"])
    assert obj(cluster, "v1/services", "checkout") == foreign


async def test_api_errors_are_retried(cluster, operator):
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/checkout"
    cluster[f"get {path}"][:3] << 500  # three failures: retried inline with backoff
    cluster[f"patch {path}"][:2] << 409  # two conflicts: retried by the handler
    cluster.objects[HSVC, NS, "checkout"] = hardened()
    await eventually(lambda: obj(cluster, "apps/v1/deployments", "checkout"))
    changed = {"metadata": {"generation": 2}, "spec": {"replicas": 4}}
    assert await api(cluster, "PATCH", f"{HSVC_PATH}/checkout", changed) == 200
    await eventually(
        lambda: obj(cluster, "apps/v1/deployments", "checkout")["spec"]["replicas"] == 4, timeout=10
    )
    await eventually(lambda: status(cluster).get("observedGeneration") == 2, timeout=10)
    assert status(cluster)["phase"] == "Progressing"
    errors = operator.metrics.reconciliations.labels("error")._value.get()
    assert errors >= 1  # the conflicts reached the handler and were retried


@pytest.mark.drift_interval(3600)  # only the watch on the Deployment can make it Healthy
async def test_alerts_come_and_go_with_the_spec(cluster, operator):
    alerts = {"slo": {"objective": 99.5}, "labels": {"team": "shop"}}
    await create_and_settle(cluster, hardened(alerts=alerts))
    rule = await eventually(
        lambda: obj(cluster, "monitoring.coreos.com/v1/prometheusrules", "checkout")
    )
    assert rule["metadata"]["labels"]["team"] == "shop"
    assert obj(cluster, "monitoring.coreos.com/v1/podmonitors", "checkout")
    off = {
        "metadata": {"generation": 2},
        "spec": {"alerts": {"enabled": False}, "monitoring": {"podMonitor": {"enabled": False}}},
    }
    assert await api(cluster, "PATCH", f"{HSVC_PATH}/checkout", off) == 200
    for resource in ("prometheusrules", "podmonitors"):
        await eventually(
            lambda r=resource: obj(cluster, f"monitoring.coreos.com/v1/{r}", "checkout") is None
        )


async def test_backups_become_cron_jobs_and_report_their_runs(cluster, operator):
    backup = {
        "schedule": "0 2 * * *",
        "sources": [
            {"name": "db", "postgres": {"urlSecretRef": {"name": "db", "key": "url"}}},
            {"name": "files", "path": {"claimName": "files"}},
        ],
        "destination": {"pvc": "backups"},
        "encryption": {"keySecretRef": {"name": "backup-key", "key": "key"}},
    }
    cluster.objects[HSVC, NS, "checkout"] = hardened(backup=backup)
    await eventually(lambda: status(cluster).get("phase") == "Failed")
    assert "spec.backup: Secret backup-key not found" in str(status(cluster)["conditions"])
    for secret in ("db", "backup-key"):
        cluster.objects["v1/secrets", NS, secret] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret, "namespace": NS},
            "data": {"url": "eA==", "key": "eA=="},
        }
    for source in ("db", "files"):
        await eventually(
            lambda s=source: obj(cluster, "batch/v1/cronjobs", f"checkout-backup-{s}"), 5
        )
    # kmock has no CronJob controller: report a run as it would.
    ran = {
        "status": {
            "lastScheduleTime": "2026-11-23T02:00:00Z",
            "lastSuccessfulTime": "2026-11-23T02:01:00Z",
        }
    }
    path = f"/apis/batch/v1/namespaces/{NS}/cronjobs/checkout-backup-db"
    assert await api(cluster, "PATCH", path, ran) == 200
    backups = await eventually(
        lambda: (
            {b["source"]: b for b in status(cluster).get("backups", [])}.get("db", {}).get(
                "lastOutcome"
            )
            == "Succeeded"
            and status(cluster)["backups"]
        ),
        timeout=5,
    )
    assert {b["source"]: b["lastOutcome"] for b in backups} == {
        "db": "Succeeded",
        "files": "NeverRun",
    }
    fewer = {
        "metadata": {"generation": 2},
        "spec": {"backup": {**backup, "sources": backup["sources"][:1]}},
    }
    assert await api(cluster, "PATCH", f"{HSVC_PATH}/checkout", fewer) == 200
    await eventually(lambda: obj(cluster, "batch/v1/cronjobs", "checkout-backup-files") is None)
    assert obj(cluster, "batch/v1/cronjobs", "checkout-backup-db")


def test_drift_checks_of_a_fleet_are_spread_over_an_interval():
    delay = drift_delay(300.0)
    delays = [delay(uid=f"uid-{index}") for index in range(1000)]
    assert all(300.0 <= value < 600.0 for value in delays)
    assert delay(uid="uid-7") == delays[7]  # fixed per object, across restarts too
    # Ten 30 s slots each get about a tenth of the fleet, not all of it at once.
    slots = [0] * 10
    for value in delays:
        slots[int((value - 300.0) // 30.0)] += 1
    assert min(slots) > 60, slots
    assert max(slots) < 140, slots


async def test_a_drift_check_reads_the_rendered_children_and_only_those(cluster, operator):
    """The start-up looked for every kind; a drift check reads what it renders or listed."""
    cluster.objects[HSVC, NS, "checkout"] = hardened()
    await eventually(lambda: status(cluster).get("children"))
    await eventually(lambda: status(cluster).get("observedGeneration") == 1)
    before = len(cluster._requests)

    def deployment_reads() -> int:
        return sum(
            1
            for request in cluster._requests[before:]
            if request.method == "GET" and request.url.path.endswith("/deployments/checkout")
        )

    await eventually(lambda: deployment_reads() >= 2)  # two drift checks (every 0.5 s here)
    # Nothing changed, so the checks write nothing: the status says it all already.
    # (kopf's own annotations and the creation's Event may still trail the status.)
    writes = [
        request.url.path
        for request in cluster._requests[before:]
        if request.method in ("PATCH", "PUT", "POST")
        and not request.url.path.endswith(("/events", "/hardenedservices/checkout"))
    ]
    assert writes == []
    assert gets_of(cluster, before, "/httproutes/", f"/{NS}/cronjobs") == []


def gets_of(cluster, since: int, *fragments: str) -> list[str]:
    return [
        request.url.path
        for request in cluster._requests[since:]
        if request.method == "GET" and any(f in request.url.path for f in fragments)
    ]


async def test_a_new_hardened_service_creates_its_children_without_reading_them(cluster, operator):
    before = len(cluster._requests)
    cluster.objects[HSVC, NS, "checkout"] = hardened()
    await eventually(lambda: status(cluster).get("observedGeneration") == 1)
    # Nothing of its own can exist yet: no sweep of the kinds it does not render...
    assert gets_of(cluster, before, "/httproutes/", "/ingresses/", f"/{NS}/cronjobs") == []
    # ...and what it renders is created, not read first.
    posted = next(
        index
        for index, request in enumerate(cluster._requests)
        if request.method == "POST" and request.url.path.endswith(f"/{NS}/deployments")
    )
    read_first = [
        request
        for request in cluster._requests[before:posted]
        if request.method == "GET" and request.url.path.endswith("/deployments/checkout")
    ]
    assert read_first == []


async def test_a_new_hardened_service_takes_over_its_own_children_left_from_before(
    cluster, operator
):
    """Children created by a run that stopped before writing any status: 409, then patched."""
    cluster.objects["apps/v1/deployments", NS, "checkout"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "checkout",
            "namespace": NS,
            "ownerReferences": [
                {
                    "apiVersion": "rampart.dev/v1alpha1",
                    "kind": "HardenedService",
                    "name": "checkout",
                    "uid": "uid-checkout",
                }
            ],
        },
        "spec": {"replicas": 1},
    }
    cluster.objects[HSVC, NS, "checkout"] = hardened()
    await eventually(lambda: status(cluster).get("observedGeneration") == 1)
    assert obj(cluster, "apps/v1/deployments", "checkout")["spec"]["replicas"] == 3
    conditions = {c["type"]: c["status"] for c in status(cluster)["conditions"]}
    assert conditions.get("Stalled") != "True"


async def test_a_status_without_its_list_of_children_looks_for_every_kind(cluster, operator):
    owner = {"apiVersion": "rampart.dev/v1alpha1", "kind": "HardenedService"}
    routes = "gateway.networking.k8s.io/v1/httproutes"
    cluster.objects[routes, NS, "checkout"] = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "checkout",
            "namespace": NS,
            "ownerReferences": [{**owner, "name": "checkout", "uid": "uid-checkout"}],
        },
    }
    # Reconciled before, by an operator that did not list what it created.
    cluster.objects[HSVC, NS, "checkout"] = {**hardened(), "status": {"phase": "Ready"}}
    await eventually(lambda: status(cluster).get("children"))
    await eventually(lambda: obj(cluster, routes, "checkout") is None)
