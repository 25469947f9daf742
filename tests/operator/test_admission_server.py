"""The admission webhook server over real TLS, its certificate kept in the kmock emulator.

Clients here trust only the caBundle the operator wrote into the webhook
configurations and check the name the API server would use
(``<service>.<namespace>.svc``), as the API server does. kmock cannot serve
Namespace objects (its path parser), so Namespace reads are answered by
reactions.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime
import json
import os
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import kmock
import kopf
import pytest
import yaml
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from rampart_operator.admission.certs import (
    CA_LIFETIME,
    SERVING_LIFETIME,
    Material,
    issue,
    serving_names,
)
from rampart_operator.admission.injection import INJECT
from rampart_operator.admission.service import Admission
from rampart_operator.kube import KubeClient
from rampart_operator.metrics import OperatorMetrics
from rampart_operator.render.sidecar import SIDECAR_NAME
from rampart_operator.settings import OperatorSettings
from rampart_operator.validation import validate
from tests.chart import find
from tests.chart import manifests as chart_manifests
from tests.conftest import async_wait_until, free_port

from .conftest import eventually, running_operator

EXAMPLES = Path(__file__).parents[2] / "examples"
ADMISSION = "admissionregistration.k8s.io/v1"
SERVICE_NAME = "rampart-webhook.rampart.svc"
# Now: the first certificate must pass OpenSSL's own check, at the real time.
T0 = datetime.datetime.now(datetime.UTC)


def configurations() -> list[dict[str, Any]]:
    """The webhook configurations exactly as the Helm chart installs them: no caBundle yet."""
    kinds = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    return [find(chart_manifests(), kind) for kind in kinds]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


@pytest.fixture
async def api(cluster: kmock.KubernetesEmulator) -> AsyncIterator[KubeClient]:
    client = KubeClient(kopf.ConnectionInfo(server=str(cluster.url), insecure=True))
    for configuration in configurations():
        await client.create(configuration)
    namespace = {"apiVersion": "v1", "kind": "Namespace"}
    cluster["get /api/v1/namespaces/shop"] << {
        **namespace,
        "metadata": {"name": "shop", "labels": {INJECT: "true"}},
    }
    cluster["get /api/v1/namespaces/plain"] << {**namespace, "metadata": {"name": "plain"}}
    yield client
    await client.close()


def webhook_settings(**overrides: Any) -> OperatorSettings:
    return OperatorSettings(
        **{
            "webhook_port": free_port(),
            "webhook_host": "127.0.0.1",
            "namespace": "rampart",
            "sidecar_mode": "native",
            "metrics_port": 0,
            "alert_port": 0,
            **overrides,
        }
    )


@contextlib.asynccontextmanager
async def serving(
    api: KubeClient, settings: OperatorSettings, clock: Clock
) -> AsyncIterator[Admission]:
    admission = Admission(settings, api, OperatorMetrics(), clock=clock)
    admission.start()
    try:
        await asyncio.wait_for(admission.serving.wait(), 10)
        yield admission
    finally:
        await admission.stop()


async def ca_bundles(api: KubeClient) -> list[str]:
    found = []
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        configuration = await api.get(ADMISSION, kind, None, "rampart")
        assert configuration is not None
        for webhook in configuration["webhooks"]:
            found.append(base64.b64decode(webhook["clientConfig"]["caBundle"]).decode())
    return found


async def trusted_context(api: KubeClient) -> ssl.SSLContext:
    bundles = set(await ca_bundles(api))
    assert len(bundles) == 1, "every webhook carries the same bundle"
    return ssl.create_default_context(cadata=bundles.pop())


async def served_certificate(port: int, context: ssl.SSLContext | None = None) -> x509.Certificate:
    """The certificate the server presents; verified by ``context`` when one is given."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=SERVICE_NAME
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


def trusted(certificate: x509.Certificate, bundle: str, when: datetime.datetime) -> bool:
    """What a TLS client at ``when`` trusting ``bundle`` says of ``certificate``.

    The clock of these checks runs years ahead, past what OpenSSL (which uses
    the real time) can be asked about.
    """
    store = Store(x509.load_pem_x509_certificates(bundle.encode()))
    verifier = PolicyBuilder().store(store).time(when).build_server_verifier(DNSName(SERVICE_NAME))
    try:
        verifier.verify(certificate, [])
    except VerificationError:
        return False
    return True


async def review(
    port: int, context: ssl.SSLContext, path: str, body: Any
) -> tuple[int, dict[str, Any] | str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{port}{path}",
            data=body if isinstance(body, bytes) else json.dumps(body),
            ssl=context,
            server_hostname=SERVICE_NAME,
        ) as response,
    ):
        if response.status != 200:
            return response.status, await response.text()
        payload: dict[str, Any] = await response.json()
        return response.status, payload["response"]


def admission_review(
    obj: dict[str, Any], kind: str, namespace: str, operation: str = "CREATE"
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"uid-{kind}-{namespace}",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "namespace": namespace,
            "operation": operation,
            "object": obj,
        },
    }


def web_pod(**labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "labels": labels},
        "spec": {"containers": [{"name": "web", "image": "ghcr.io/acme/web:1"}]},
    }


async def test_the_webhooks_answer_over_tls_trusted_through_the_ca_bundle(
    api: KubeClient,
) -> None:
    settings = webhook_settings()
    async with serving(api, settings, Clock()):
        context = await trusted_context(api)
        port = settings.webhook_port

        invalid = yaml.safe_load((EXAMPLES / "invalid" / "bad-enum.yaml").read_text())
        status, answer = await review(
            port, context, "/validate", admission_review(invalid, "HardenedService", "shop")
        )
        assert status == 200
        assert isinstance(answer, dict)
        assert answer["uid"] == "uid-HardenedService-shop"
        assert answer["allowed"] is False
        causes = answer["status"]["details"]["causes"]
        assert [(c["field"], c["message"]) for c in causes] == [
            (p.path, p.message) for p in validate(invalid)
        ]
        assert causes
        assert all(str(p) in answer["status"]["message"] for p in validate(invalid))

        # Invalid from before the webhook existed: bookkeeping on it still passes,
        # a change of its spec does not.
        tagged = copy.deepcopy(invalid)
        tagged["metadata"]["annotations"] = {"rampart.dev/last-handled-configuration": "{}"}
        bookkeeping = admission_review(tagged, "HardenedService", "shop", "UPDATE")
        bookkeeping["request"]["oldObject"] = invalid
        _, answer = await review(port, context, "/validate", bookkeeping)
        assert isinstance(answer, dict)
        assert answer["allowed"] is True
        edited = copy.deepcopy(tagged)
        edited["spec"]["replicas"] = 3
        bookkeeping["request"]["object"] = edited
        _, answer = await review(port, context, "/validate", bookkeeping)
        assert isinstance(answer, dict)
        assert answer["allowed"] is False

        valid = yaml.safe_load((EXAMPLES / "checkout.yaml").read_text())
        status, answer = await review(
            port, context, "/validate", admission_review(valid, "HardenedService", "shop", "UPDATE")
        )
        assert answer == {"uid": "uid-HardenedService-shop", "allowed": True}

        # A labelled namespace: the sidecar goes in.
        pod = web_pod()
        status, answer = await review(
            port, context, "/inject", admission_review(pod, "Pod", "shop")
        )
        assert isinstance(answer, dict)
        assert answer["allowed"] is True
        assert answer["patchType"] == "JSONPatch"
        patch = json.loads(base64.b64decode(answer["patch"]))
        patched = jsonpatch.apply_patch(copy.deepcopy(pod), patch)
        assert patched["spec"]["initContainers"][0]["name"] == SIDECAR_NAME
        # The patched pod comes back for a second look (reinvocation): left alone.
        status, again = await review(
            port, context, "/inject", admission_review(patched, "Pod", "shop")
        )
        assert again == {"uid": "uid-Pod-shop", "allowed": True}

        # Not asked for; asked for by the pod itself; never in kube-system.
        _, plain = await review(
            port, context, "/inject", admission_review(web_pod(), "Pod", "plain")
        )
        assert plain == {"uid": "uid-Pod-plain", "allowed": True}
        _, asked = await review(
            port, context, "/inject", admission_review(web_pod(**{INJECT: "true"}), "Pod", "plain")
        )
        assert isinstance(asked, dict)
        assert "patch" in asked
        _, system = await review(
            port,
            context,
            "/inject",
            admission_review(web_pod(**{INJECT: "true"}), "Pod", "kube-system"),
        )
        assert system == {"uid": "uid-Pod-kube-system", "allowed": True}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).encode(),
        json.dumps(
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}
        ).encode(),
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe",
        json.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "u",
                    "operation": "CREATE",
                    "object": {"metadata": "x", "spec": 5},
                },
            }
        ).encode(),
    ],
    ids=["not-json", "a-list", "v1beta1", "no-uid", "deeply-nested", "not-utf8", "odd-object"],
)
async def test_anything_but_an_admission_review_gets_400_and_the_server_lives_on(
    api: KubeClient, body: bytes
) -> None:
    settings = webhook_settings()
    async with serving(api, settings, Clock()) as admission:
        context = await trusted_context(api)
        for path in ("/validate", "/inject"):
            status, _ = await review(settings.webhook_port, context, path, body)
            assert status == 400
        valid = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
        _, answer = await review(
            settings.webhook_port,
            context,
            "/validate",
            admission_review(valid, "HardenedService", "shop"),
        )
        assert isinstance(answer, dict)
        assert answer["allowed"] is True
        registry = admission.keeper.metrics.registry
        for webhook in ("validate", "inject"):
            labels = {"webhook": webhook, "result": "malformed"}
            assert (
                registry.get_sample_value("rampart_operator_admission_reviews_total", labels) == 1
            )


async def test_renewal_is_served_at_once_and_a_new_ca_is_trusted_beside_the_old(
    api: KubeClient,
) -> None:
    clock = Clock()
    first, second = webhook_settings(), webhook_settings()
    async with serving(api, first, clock) as replica_a, serving(api, second, clock) as replica_b:
        context = await trusted_context(api)
        original = await served_certificate(first.webhook_port, context)
        # Both replicas serve the one certificate from the one Secret.
        assert (await served_certificate(second.webhook_port, context)) == original
        (bundle,) = set(await ca_bundles(api))

        # Two thirds of the serving certificate's life later: renewed by the same CA.
        clock.now = T0 + SERVING_LIFETIME * 0.7
        await replica_a.keeper.check()
        renewed = await served_certificate(first.webhook_port)
        assert renewed.serial_number != original.serial_number
        assert trusted(renewed, bundle, clock.now)
        assert set(await ca_bundles(api)) == {bundle}  # nothing new for the API server
        secret = await api.get("v1", "Secret", "rampart", "rampart-webhook-tls")
        assert secret is not None
        stored = base64.b64decode(secret["data"]["tls.crt"]).decode()
        assert x509.load_pem_x509_certificate(stored.encode()) == renewed

        # The CA's own renewal. Replica B has not looked yet: it still serves the
        # certificate of the old CA, which the new bundle still trusts.
        clock.now = T0 + CA_LIFETIME * 0.67
        await replica_a.keeper.check()
        (new_bundle,) = set(await ca_bundles(api))
        assert new_bundle != bundle
        current = await served_certificate(first.webhook_port)
        assert trusted(current, new_bundle, clock.now)
        assert not trusted(current, bundle, clock.now)
        lagging = await served_certificate(second.webhook_port)
        assert lagging == original
        assert trusted(lagging, new_bundle, T0)
        await replica_b.keeper.check()
        assert (await served_certificate(second.webhook_port)) == current


async def test_a_configuration_reapplied_without_ca_bundle_gets_it_back(
    cluster: kmock.KubernetesEmulator, api: KubeClient
) -> None:
    settings = webhook_settings(drift_interval=60.0)  # the certificate check waits 600 s
    path = f"/apis/{ADMISSION}/mutatingwebhookconfigurations/rampart"
    patches = cluster[f"patch {path}"]  # the emulator's log of these requests
    async with running_operator(cluster, settings) as runtime:
        await eventually(
            lambda: runtime.admission is not None and runtime.admission.serving.is_set()
        )
        bundles = await ca_bundles(api)
        written = len(list(patches))
        # What `helm upgrade` does: the configuration as the chart renders it.
        reapplied = configurations()[0]["webhooks"]
        await api.merge_patch(
            ADMISSION, "MutatingWebhookConfiguration", None, "rampart", {"webhooks": reapplied}
        )
        assert "caBundle" not in list(patches)[written].data["webhooks"][0]["clientConfig"]

        async def restored() -> bool:
            try:
                return len(list(patches)) > written + 1 and await ca_bundles(api) == bundles
            except KeyError:
                return False

        await async_wait_until(restored)


async def test_with_cert_manager_the_mounted_files_are_served_and_reloaded(
    api: KubeClient, tmp_path: Path
) -> None:
    def mount(material: Material) -> None:
        # As the kubelet updates a Secret volume: new files swapped in whole.
        for name, text in (("tls.crt", material.cert), ("tls.key", material.key)):
            staged = tmp_path / f".{name}"
            staged.write_text(text)
            staged.replace(tmp_path / name)

    first = issue(serving_names("rampart-webhook", "rampart"), T0)
    mount(first)
    settings = webhook_settings(webhook_cert_dir=str(tmp_path))
    async with serving(api, settings, Clock()) as admission:
        context = ssl.create_default_context(cadata=first.ca_bundle)
        served = await served_certificate(settings.webhook_port, context)
        assert served == x509.load_pem_x509_certificate(first.cert.encode())
        second = issue(serving_names("rampart-webhook", "rampart"), T0)
        mount(second)
        os.utime(tmp_path / "tls.crt", (time.time() + 5, time.time() + 5))  # a later mtime
        await admission.keeper.check()
        context = ssl.create_default_context(cadata=second.ca_bundle)
        served = await served_certificate(settings.webhook_port, context)
        assert served == x509.load_pem_x509_certificate(second.cert.encode())
    # cert-manager owns the Secret and caBundle: the operator wrote neither.
    assert await api.get("v1", "Secret", "rampart", "rampart-webhook-tls") is None
    configuration = await api.get(ADMISSION, "MutatingWebhookConfiguration", None, "rampart")
    assert configuration is not None
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]
