"""The pure parts around the state machine: revisions, routers, placement, analysis, alerts."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from rampart_operator.alertmanager import AlertStore, receiver_app
from rampart_operator.alertproof import PROOF_LABEL, proof, proof_key
from rampart_operator.analysis import checks_for, judge
from rampart_operator.api import parse_spec
from rampart_operator.api.canary import Analysis
from rampart_operator.canary import Rollout
from rampart_operator.render import render
from rampart_operator.render.routers import ROUTERS
from rampart_operator.revisions import (
    Revision,
    checksum,
    checksum_key,
    config_references,
    revision,
    target_template,
)
from rampart_operator.rollout import place
from rampart_operator.schema import to_json_schema
from rampart_operator.settings import OperatorSettings
from rampart_operator.validation import validate

from .test_alerts import crd_schema

NS, NAME = "shop", "checkout"


def service(**canary: Any) -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": NAME, "namespace": NS, "uid": "u1"},
        "spec": {
            "image": "ghcr.io/acme/checkout:1",
            "replicas": 4,
            "canary": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 100}], **canary},
        },
    }


def by_name(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in manifests}


# Revisions


def test_canary_image_replaces_the_first_containers_image_only():
    spec = parse_spec(service(image="ghcr.io/acme/checkout:2"))
    template = target_template(spec)
    assert template["spec"]["containers"][0]["image"] == "ghcr.io/acme/checkout:2"
    assert spec.image == "ghcr.io/acme/checkout:1"  # the spec itself is not touched


def test_config_references_cover_volumes_projections_and_environment():
    template = {
        "spec": {
            "volumes": [
                {"name": "a", "configMap": {"name": "cm-vol"}},
                {"name": "b", "secret": {"secretName": "s-vol"}},
                {
                    "name": "c",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "cm-proj"}},
                            {"secret": {"name": "s-proj"}},
                        ]
                    },
                },
            ],
            "containers": [
                {
                    "name": "app",
                    "envFrom": [
                        {"configMapRef": {"name": "cm-env"}},
                        {"secretRef": {"name": "s-env"}},
                    ],
                    "env": [
                        {
                            "name": "X",
                            "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "k"}},
                        },
                        {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "s-key", "key": "k"}}},
                        {"name": "Z", "value": "plain"},
                    ],
                }
            ],
        }
    }
    assert config_references(template) == [
        ("ConfigMap", "cm-env"),
        ("ConfigMap", "cm-key"),
        ("ConfigMap", "cm-proj"),
        ("ConfigMap", "cm-vol"),
        ("Secret", "s-env"),
        ("Secret", "s-key"),
        ("Secret", "s-proj"),
        ("Secret", "s-vol"),
    ]


def test_a_changed_config_map_or_secret_is_a_new_revision_without_its_values_showing():
    template = {"spec": {"containers": [{"name": "app", "image": "x"}]}}
    key = checksum_key("u1", "token")
    before = checksum({("Secret", "db"): {"data": {"password": "aHVudGVyMg=="}}}, key)
    after = checksum({("Secret", "db"): {"data": {"password": "c2VjcmV0"}}}, key)
    missing = checksum({("Secret", "db"): None}, key)
    assert len({before, after, missing}) == 3
    old, new = revision(template, before), revision(template, after)
    assert old.id != new.id
    assert "aHVudGVyMg" not in json.dumps(old.to_status())
    assert Revision.from_status(old.to_status()) == old


# Routers


@pytest.mark.parametrize(
    ("total", "weight", "stable", "canary"),
    [(4, 10, 3, 1), (4, 30, 2, 2), (4, 50, 2, 2), (4, 100, 0, 4), (1, 10, 1, 1), (10, 10, 9, 1)],
)
def test_replicas_router_meets_weights_to_the_nearest_pod(total, weight, stable, canary):
    router = ROUTERS["replicas"]
    assert router.canary_replicas(total, weight) == canary
    assert router.stable_replicas(total, weight) == stable
    assert router.stable_replicas(total, 0) == total
    assert router.canary_replicas(total, 0) == 0


GATEWAY = {
    "router": "gatewayAPI",
    "gatewayAPI": {"parentRefs": [{"name": "public"}], "hostnames": ["shop.example"]},
}


def test_gateway_api_route_validates_against_the_httproute_crd_and_carries_the_weight():
    resource = service(traffic=GATEWAY)
    spec = parse_spec(resource)
    rollout = Rollout(
        phase="Progressing", stable="a", revision="b", weight=10, step=0, step_started=1.0
    )
    known = {"a": revision(target_template(spec), ""), "b": revision(target_template(spec), "x")}
    found = by_name(render(resource, OperatorSettings(), place(spec, rollout, known)))
    route = found["HTTPRoute/checkout"]
    validator = jsonschema.Draft202012Validator(
        to_json_schema(crd_schema("gateway.networking.k8s.io_httproutes.yaml"))
    )
    assert [e.message for e in validator.iter_errors(route)] == []
    refs = route["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["weight"]) for r in refs] == [("checkout", 90), ("checkout-canary", 10)]
    # The Service the route weighs as "stable" selects stable pods only.
    assert found["Service/checkout"]["spec"]["selector"]["rampart.dev/track"] == "stable"
    assert found["Service/checkout-canary"]["spec"]["selector"]["rampart.dev/track"] == "canary"
    # Weighted routers keep every stable pod; the canary grows with its step.
    assert found["Deployment/checkout"]["spec"]["replicas"] == 4
    assert found["Deployment/checkout-canary"]["spec"]["replicas"] == 1
    for manifest in found.values():
        if manifest["kind"] != "HTTPRoute":
            kubernetes_validate.validate(manifest, "1.33", strict=True)


PRIMARY_INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "shop", "namespace": NS},
    "spec": {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "shop.example",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": NAME, "port": {"number": 80}}},
                        },
                        {
                            "path": "/static",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "cdn", "port": {"number": 80}}},
                        },
                    ]
                },
            }
        ],
    },
}
NGINX = {"router": "ingressNginx", "ingressNginx": {"ingress": "shop"}}


def test_ingress_nginx_canary_copies_the_users_rules_for_the_canary_service():
    resource = service(traffic=NGINX)
    spec = parse_spec(resource)
    router = ROUTERS["ingressNginx"]
    live = {("networking.k8s.io/v1", "Ingress", "shop"): copy.deepcopy(PRIMARY_INGRESS)}
    assert router.problems(resource, spec, live) == []
    made = by_name(router.manifests(resource, spec, 30, live))
    canary = made["Ingress/checkout-canary"]
    kubernetes_validate.validate(canary, "1.33", strict=True)
    annotations = canary["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "30"
    paths = canary["spec"]["rules"][0]["http"]["paths"]
    assert [p["backend"]["service"]["name"] for p in paths] == ["checkout-canary", "cdn"]
    assert canary["spec"]["ingressClassName"] == "nginx"
    assert (
        PRIMARY_INGRESS["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        == NAME
    )


def test_ingress_nginx_names_a_missing_or_unrelated_ingress():
    resource = service(traffic=NGINX)
    spec = parse_spec(resource)
    router = ROUTERS["ingressNginx"]
    key = ("networking.k8s.io/v1", "Ingress", "shop")
    assert router.problems(resource, spec, {key: None}) == [
        ("spec.canary.traffic.ingressNginx.ingress", "Ingress shop not found")
    ]
    other = copy.deepcopy(PRIMARY_INGRESS)
    other["spec"]["rules"][0]["http"]["paths"].pop(0)
    assert (
        "sends nothing to Service checkout" in router.problems(resource, spec, {key: other})[0][1]
    )


# Placement


def test_replicas_placement_follows_the_rollout():
    spec = parse_spec(service())
    known = {"a": revision({"spec": {"containers": [{"name": "app", "image": "1"}]}}, "")}
    known["b"] = revision({"spec": {"containers": [{"name": "app", "image": "2"}]}}, "")
    waiting = Rollout(phase="Progressing", stable="a", revision="b")
    at_ten = Rollout(phase="Progressing", stable="a", revision="b", weight=10, step_started=1.0)
    promoting = Rollout(
        phase="Promoting", stable="b", revision="b", previous="a", weight=100, step=1
    )
    done = Rollout(phase="Succeeded", stable="b", revision="b")
    # Pods for the step come up before any stable pod goes.
    assert (
        place(spec, waiting, known).stable_replicas,
        place(spec, waiting, known).canary_replicas,
    ) == (4, 1)
    assert (
        place(spec, at_ten, known).stable_replicas,
        place(spec, at_ten, known).canary_replicas,
    ) == (3, 1)
    # Promotion: the stable Deployment takes the new template at full strength first.
    p = place(spec, promoting, known)
    assert p.stable == known["b"]
    assert (p.stable_replicas, p.canary_replicas, p.weight) == (4, 4, 100)
    d = place(spec, done, known)
    assert (d.stable_replicas, d.canary_replicas, d.weight) == (4, 0, 0)


def test_without_canary_nothing_changes():
    resource = service()
    del resource["spec"]["canary"]
    found = by_name(render(resource, OperatorSettings()))
    assert "Deployment/checkout-canary" not in found
    assert "rampart.dev/track" not in found["Service/checkout"]["spec"]["selector"]
    annotations = found["Deployment/checkout"]["spec"]["template"]["metadata"]["annotations"]
    assert "rampart.dev/revision" not in annotations


def test_offline_render_shows_the_starting_version_and_an_idle_canary():
    found = by_name(render(service(image="ghcr.io/acme/checkout:2"), OperatorSettings()))
    stable = found["Deployment/checkout"]["spec"]
    canary = found["Deployment/checkout-canary"]["spec"]
    assert stable["replicas"] == 4
    assert canary["replicas"] == 0
    app = next(c for c in stable["template"]["spec"]["containers"] if c["name"] == "app")
    assert app["image"] == "ghcr.io/acme/checkout:1"
    assert canary["selector"]["matchLabels"]["rampart.dev/track"] == "canary"


# Validation


@pytest.mark.parametrize(
    ("canary", "path", "fragment"),
    [
        (
            {"image": "x", "template": {"spec": {"containers": [{"name": "a"}]}}},
            "spec.canary.image",
            "not both",
        ),
        (
            {"analysis": {"thresholds": {"errorRate": 0.1}}},
            "spec.canary.analysis.thresholds",
            "prometheus",
        ),
        (
            {
                "analysis": {
                    "prometheus": {"url": "http://p"},
                    "metrics": [{"name": "m", "query": "q"}],
                }
            },
            "spec.canary.analysis.metrics.0",
            "max, min",
        ),
        (
            {
                "analysis": {
                    "prometheus": {"url": "http://p"},
                    "metrics": [{"name": "errorRate", "query": "q", "max": 1}],
                }
            },
            "spec.canary.analysis.metrics.0.name",
            "taken",
        ),
        ({"traffic": {"router": "gatewayAPI"}}, "spec.canary.traffic.gatewayAPI", "needs"),
        ({"traffic": {"router": "mesh"}}, "spec.canary.traffic.router", "is not one of"),
        ({"steps": [{"weight": 0}]}, "spec.canary.steps.0.weight", "minimum"),
        (
            {"template": {"spec": {"containers": [{"name": "rampart-sidecar"}]}}},
            "spec.canary.template.spec.containers.0.name",
            "sidecar",
        ),
    ],
)
def test_canary_problems_name_their_field(canary, path, fragment):
    problems = validate(service(**canary))
    assert any(p.path == path and fragment in p.message for p in problems), problems


# Analysis


def test_built_in_checks_select_the_canary_of_this_service():
    analysis = Analysis.model_validate(
        {
            "window": "2m",
            "prometheus": {"url": "http://prometheus:9090"},
            "thresholds": {"errorRate": 0.02, "latencyP95": "400ms"},
        }
    )
    checks = {c.name: c for c in checks_for(NS, NAME, analysis)}
    for check in checks.values():
        assert 'namespace="shop", hardenedservice="checkout", track="canary"' in check.query
        assert "[2m]" in check.query
    assert checks["errorRate"].max == 0.02
    assert checks["latencyP95"].max == 0.4
    assert "or vector(0)" in checks["errorRate"].query  # no 5xx at all is 0%, not "no data"


def test_judge_fails_on_any_bound_and_is_inconclusive_without_enough_data():
    analysis = Analysis.model_validate(
        {
            "prometheus": {"url": "http://prometheus:9090"},
            "thresholds": {"errorRate": 0.02},
            "metrics": [{"name": "saturation", "query": "q", "min": 0.1, "max": 0.9}],
        }
    )
    checks = checks_for(NS, NAME, analysis)
    good = {"requests": 100.0, "errorRate": 0.01, "saturation": 0.5}
    assert judge(1.0, checks, good, 10, "1m").passed is True
    bad = judge(1.0, checks, {**good, "errorRate": 0.05}, 10, "1m")
    assert bad.passed is False
    assert bad.reasons == ("errorRate 5.00% > 2.00%",)
    low = judge(1.0, checks, {**good, "saturation": 0.05}, 10, "1m")
    assert low.passed is False
    assert "saturation 0.05 < 0.1" in low.reasons[0]
    few = judge(1.0, checks, {**good, "requests": 3.0}, 10, "1m")
    assert few.passed is None
    assert "3 canary requests in 1m, fewer than 10" in few.reasons[0]
    empty = judge(1.0, checks, {**good, "saturation": None}, 10, "1m")
    assert empty.passed is None
    assert empty.reasons == ("saturation: no data",)
    down = judge(1.0, checks, {}, 10, "1m", ("errorRate: connection refused",))
    assert down.passed is None


# Alerts


def alert(
    status: str, name: str = "RampartHighErrorRate", ns: str = NS, svc: str = NAME
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "namespace": ns, "hardenedservice": svc},
        "fingerprint": f"{name}-{ns}-{svc}",
    }


def test_store_tracks_firing_and_resolved_alerts_per_service():
    store = AlertStore()
    assert store.record([alert("firing"), {"labels": {"alertname": "Unrelated"}}]) == {(NS, NAME)}
    assert store.record([alert("firing")]) == set()  # already known: nothing new
    assert store.firing(NS, NAME) == ("RampartHighErrorRate",)
    store.record([alert("resolved")])
    assert store.firing(NS, NAME) == ()


def test_polling_replaces_the_picture_and_reports_only_new_alerts():
    store = AlertStore()
    store.record([alert("firing", "Lost")])
    fresh = store.replace([alert("firing", "A"), alert("firing", "B", svc="cart")])
    assert fresh == {(NS, NAME), (NS, "cart")}
    assert store.firing(NS, NAME) == ("A",)  # "Lost" resolved while no webhook came
    assert store.replace([alert("firing", "A")]) == set()


def test_an_alert_counts_only_with_the_proof_rendered_for_its_service():
    key = proof_key("s3cret")
    assert key is not None
    store = AlertStore(key)
    forged = alert("firing", "Forged")  # another namespace's rule, naming this service
    borrowed = alert("firing", "Borrowed")  # with the proof of another service
    borrowed["labels"][PROOF_LABEL] = proof(key, "tenant-b", NAME)
    truncated = alert("firing", "Truncated")
    truncated["labels"][PROOF_LABEL] = proof(key, NS, NAME)[:-1]
    assert store.record([forged, borrowed, truncated]) == set()
    assert store.replace([forged, borrowed, truncated]) == set()
    assert store.firing(NS, NAME) == ()
    proven = alert("firing", "Proven")
    proven["labels"][PROOF_LABEL] = proof(key, NS, NAME)
    assert store.record([proven]) == {(NS, NAME)}
    assert store.firing(NS, NAME) == ("Proven",)
    # Labels that are not a mapping are nobody's.
    assert store.record([{"labels": ["namespace", NS], "status": "firing"}]) == set()


@pytest.fixture
async def receiver():
    store = AlertStore()
    calls: list[set[tuple[str, str]]] = []

    async def on_firing(keys: set[tuple[str, str]], received: float) -> None:
        calls.append(keys)

    app = receiver_app(store, "s3cret", on_firing, lambda: 0.0)
    async with TestClient(TestServer(app)) as client:
        yield client, store, calls


BODY = {"version": "4", "status": "firing", "alerts": [alert("firing")]}


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic czNjcmV0", "Bearer s3cre"])
async def test_receiver_refuses_without_the_token_and_changes_nothing(receiver, header):
    client, store, calls = receiver
    headers = {"Authorization": header} if header else {}
    response = await client.post("/alertmanager", json=BODY, headers=headers)
    assert response.status == 401
    assert store.firing(NS, NAME) == ()
    assert calls == []


@pytest.mark.parametrize(
    "body", [b"{not json", b"[]", b'{"alerts": "x"}', b'{"alerts": [1]}', b"\xff\xfe"]
)
async def test_receiver_answers_malformed_bodies_with_400(receiver, body):
    client, _store, calls = receiver
    response = await client.post(
        "/alertmanager", data=body, headers={"Authorization": "Bearer s3cret"}
    )
    assert response.status == 400
    assert calls == []


async def test_receiver_takes_alertmanagers_webhook(receiver):
    client, store, calls = receiver
    response = await client.post(
        "/alertmanager", json=BODY, headers={"Authorization": "Bearer s3cret"}
    )
    assert response.status == 200
    assert (await response.json()) == {"accepted": 1}
    assert calls == [{(NS, NAME)}]
    assert store.firing(NS, NAME) == ("RampartHighErrorRate",)


def test_example_canary_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "canary.yaml"
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "HardenedService":
            assert validate(doc) == []
