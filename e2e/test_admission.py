"""The admission webhook server over real TLS, its certificate kept in the real
API server: a Secret, and the caBundle of the webhook configurations.

Clients here trust only the caBundle the operator wrote into the webhook
configurations and check the name the API server would use
(``<service>.<namespace>.svc``), as the API server does. Each test's
configurations are the chart's, renamed, and select no namespace, so the API
server itself never calls them; the keeper and the server are the operator's
own, in this process, as admin. The session operator's own configuration is
used only where its watch is what is tested.
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
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import kopf
import pytest
import yaml
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from tests.chart import find
from tests.chart import manifests as chart_manifests
from tests.operator.test_webhook_ca_key import assert_no_ca_key, legacy_secret

from rampart_operator.admission.certs import (
    PROMOTE_AFTER,
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

from .conftest import OPERATOR_USER, RELEASE
from .localcluster import Cluster

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[1] / "examples"
ADMISSION = "admissionregistration.k8s.io/v1"
KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
SERVICE = "rampart-webhook"
# Now: the first certificate must pass OpenSSL's own check, at the real time.
T0 = datetime.datetime.now(datetime.UTC)


@dataclass
class Home:
    """Where a test's keeper keeps its certificate, and the namespaces it reviews for."""

    client: KubeClient  # admin
    namespace: str  # the operator's own (never injected)
    shop: str  # labelled for injection
    plain: str  # not labelled
    configuration: str

    @property
    def service_name(self) -> str:
        """The name the API server checks the serving certificate against."""
        return f"{SERVICE}.{self.namespace}.svc"


def configurations(name: str) -> list[dict[str, Any]]:
    """The webhook configurations as the Helm chart installs them (no caBundle yet),
    renamed, and selecting no namespace: the API server never calls them."""
    found = []
    for kind in KINDS:
        configuration = copy.deepcopy(find(chart_manifests(), kind))
        configuration["metadata"] = {"name": name}
        for webhook in configuration["webhooks"]:
            webhook["namespaceSelector"] = {"matchLabels": {"rampart.dev/never": "true"}}
        found.append(configuration)
    return found


def admin_client(local: Cluster) -> KubeClient:
    return KubeClient(
        kopf.ConnectionInfo(
            server=local.server,
            ca_path=str(local.ca_file),
            certificate_path=str(local.workdir / "admin.crt"),
            private_key_path=str(local.workdir / "admin.key"),
        )
    )


@pytest.fixture
async def home(local: Cluster, namespace: str) -> AsyncIterator[Home]:
    shop, plain = f"{namespace}-shop", f"{namespace}-plain"
    local.kubectl("create", "namespace", shop)
    local.kubectl("label", "namespace", shop, f"{INJECT}=true")
    local.kubectl("create", "namespace", plain)
    client = admin_client(local)
    name = f"{namespace}-hooks"
    for configuration in configurations(name):
        await client.create(configuration)
    try:
        yield Home(client, namespace, shop, plain, name)
    finally:
        await client.close()
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            local.kubectl("delete", kind, name)
        local.kubectl("delete", "namespace", shop, plain, "--wait=false")


def webhook_settings(home: Home, **overrides: Any) -> OperatorSettings:
    return OperatorSettings(
        **{
            "webhook_port": 0,
            "webhook_host": "127.0.0.1",
            "webhook_service": SERVICE,
            "webhook_secret": f"{SERVICE}-tls",
            "webhook_configuration": home.configuration,
            "namespace": home.namespace,
            "sidecar_mode": "native",
            "metrics_port": 0,
            "alert_port": 0,
            **overrides,
        }
    )


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime.datetime:
        return self.now


@contextlib.asynccontextmanager
async def serving(home: Home, settings: OperatorSettings, clock: Clock) -> AsyncIterator[Admission]:
    admission = Admission(settings, home.client, OperatorMetrics(), clock=clock)
    admission.start()
    try:
        await asyncio.wait_for(admission.serving.wait(), 10)
        yield admission
    finally:
        await admission.stop()


async def ca_bundles(client: KubeClient, name: str) -> list[str]:
    found = []
    for kind in KINDS:
        configuration = await client.get(ADMISSION, kind, None, name)
        assert configuration is not None
        for webhook in configuration["webhooks"]:
            found.append(base64.b64decode(webhook["clientConfig"]["caBundle"]).decode())
    return found


async def trusted_context(home: Home) -> ssl.SSLContext:
    bundles = set(await ca_bundles(home.client, home.configuration))
    assert len(bundles) == 1, "every webhook carries the same bundle"
    return ssl.create_default_context(cadata=bundles.pop())


async def served_certificate(
    home: Home, port: int, context: ssl.SSLContext | None = None
) -> x509.Certificate:
    """The certificate the server presents; verified by ``context`` when one is given."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname=home.service_name
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


def trusted(
    home: Home, certificate: x509.Certificate, bundle: str, when: datetime.datetime
) -> bool:
    """What a TLS client at ``when`` trusting ``bundle`` says of ``certificate``.

    The clock of these checks runs years ahead, past what OpenSSL (which uses
    the real time) can be asked about.
    """
    store = Store(x509.load_pem_x509_certificates(bundle.encode()))
    verifier = (
        PolicyBuilder().store(store).time(when).build_server_verifier(DNSName(home.service_name))
    )
    try:
        verifier.verify(certificate, [])
    except VerificationError:
        return False
    return True


async def review(
    home: Home, port: int, context: ssl.SSLContext, path: str, body: Any
) -> tuple[int, dict[str, Any] | str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"https://127.0.0.1:{port}{path}",
            data=body if isinstance(body, bytes) else json.dumps(body),
            ssl=context,
            server_hostname=home.service_name,
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


async def test_the_webhooks_answer_over_tls_trusted_through_the_ca_bundle(home: Home) -> None:
    settings = webhook_settings(home)
    async with serving(home, settings, Clock()) as admission:
        context = await trusted_context(home)
        port = admission.port
        shop, plain = home.shop, home.plain

        invalid = yaml.safe_load((EXAMPLES / "invalid" / "bad-enum.yaml").read_text())
        status, answer = await review(
            home, port, context, "/validate", admission_review(invalid, "HardenedService", shop)
        )
        assert status == 200
        assert isinstance(answer, dict)
        assert answer["uid"] == f"uid-HardenedService-{shop}"
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
        bookkeeping = admission_review(tagged, "HardenedService", shop, "UPDATE")
        bookkeeping["request"]["oldObject"] = invalid
        _, answer = await review(home, port, context, "/validate", bookkeeping)
        assert isinstance(answer, dict)
        assert answer["allowed"] is True
        edited = copy.deepcopy(tagged)
        edited["spec"]["replicas"] = 3
        bookkeeping["request"]["object"] = edited
        _, answer = await review(home, port, context, "/validate", bookkeeping)
        assert isinstance(answer, dict)
        assert answer["allowed"] is False

        valid = yaml.safe_load((EXAMPLES / "checkout.yaml").read_text())
        status, answer = await review(
            home,
            port,
            context,
            "/validate",
            admission_review(valid, "HardenedService", shop, "UPDATE"),
        )
        assert answer == {"uid": f"uid-HardenedService-{shop}", "allowed": True}

        # A labelled namespace: the sidecar goes in.
        pod = web_pod()
        status, answer = await review(
            home, port, context, "/inject", admission_review(pod, "Pod", shop)
        )
        assert isinstance(answer, dict)
        assert answer["allowed"] is True
        assert answer["patchType"] == "JSONPatch"
        patch = json.loads(base64.b64decode(answer["patch"]))
        patched = jsonpatch.apply_patch(copy.deepcopy(pod), patch)
        assert patched["spec"]["initContainers"][0]["name"] == SIDECAR_NAME
        # The patched pod comes back for a second look (reinvocation): left alone.
        status, again = await review(
            home, port, context, "/inject", admission_review(patched, "Pod", shop)
        )
        assert again == {"uid": f"uid-Pod-{shop}", "allowed": True}

        # Not asked for; asked for by the pod itself; never in kube-system.
        _, plain_answer = await review(
            home, port, context, "/inject", admission_review(web_pod(), "Pod", plain)
        )
        assert plain_answer == {"uid": f"uid-Pod-{plain}", "allowed": True}
        _, asked = await review(
            home,
            port,
            context,
            "/inject",
            admission_review(web_pod(**{INJECT: "true"}), "Pod", plain),
        )
        assert isinstance(asked, dict)
        assert "patch" in asked
        _, system = await review(
            home,
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
    home: Home, body: bytes
) -> None:
    async with serving(home, webhook_settings(home), Clock()) as admission:
        context = await trusted_context(home)
        for path in ("/validate", "/inject"):
            status, _ = await review(home, admission.port, context, path, body)
            assert status == 400
        valid = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
        _, answer = await review(
            home,
            admission.port,
            context,
            "/validate",
            admission_review(valid, "HardenedService", home.shop),
        )
        assert isinstance(answer, dict)
        assert answer["allowed"] is True
        registry = admission.keeper.metrics.registry
        for webhook in ("validate", "inject"):
            labels = {"webhook": webhook, "result": "malformed"}
            assert (
                registry.get_sample_value("rampart_operator_admission_reviews_total", labels) == 1
            )


async def test_a_renewal_is_trusted_before_it_is_served_and_no_ca_key_is_kept(
    home: Home,
) -> None:
    clock = Clock()
    settings = webhook_settings(home)
    async with (
        serving(home, settings, clock) as replica_a,
        serving(home, settings, clock) as replica_b,
    ):
        port_a, port_b = replica_a.port, replica_b.port
        context = await trusted_context(home)
        original = await served_certificate(home, port_a, context)
        # Both replicas serve the one certificate from the one Secret.
        assert (await served_certificate(home, port_b, context)) == original
        (bundle,) = set(await ca_bundles(home.client, home.configuration))

        async def stored() -> dict[str, str]:
            secret = await home.client.get("v1", "Secret", home.namespace, settings.webhook_secret)
            assert secret is not None
            return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}

        # Whoever reads the Secret cannot sign a certificate the API server trusts.
        assert not [key for key in await stored() if key.startswith("ca") and "key" in key]

        # Two thirds of the certificate's life later: a new CA and certificate. The
        # API server is given the new CA first, beside the old; nothing changes
        # in what is served yet.
        clock.now = T0 + SERVING_LIFETIME * 0.7
        await replica_a.keeper.check()
        (staged_bundle,) = set(await ca_bundles(home.client, home.configuration))
        assert staged_bundle != bundle
        assert (await served_certificate(home, port_a)) == original
        assert trusted(home, original, staged_bundle, clock.now)
        assert not [key for key in await stored() if key.startswith("ca") and "key" in key]

        # PROMOTE_AFTER later the new certificate is served, trusted by that bundle.
        clock.now += PROMOTE_AFTER
        await replica_a.keeper.check()
        current = await served_certificate(home, port_a)
        assert current.serial_number != original.serial_number
        assert trusted(home, current, staged_bundle, clock.now)
        assert not trusted(home, current, bundle, clock.now)  # a CA of its own
        assert x509.load_pem_x509_certificate((await stored())["tls.crt"].encode()) == current
        # Replica B has not looked yet: it still serves the old certificate, which
        # the bundle still trusts, so the API server can call either replica.
        (live_bundle,) = set(await ca_bundles(home.client, home.configuration))
        lagging = await served_certificate(home, port_b)
        assert lagging == original
        assert trusted(home, lagging, live_bundle, clock.now)
        await replica_b.keeper.check()
        assert (await served_certificate(home, port_b)) == current


async def test_a_secret_an_older_version_wrote_loses_its_ca_key(home: Home) -> None:
    """An older operator kept its CA's private key in the Secret: the first check of
    this one removes it (a merge patch keeps what it does not name: it must say null)."""
    settings = webhook_settings(home)
    legacy = legacy_secret(T0, serving_names(SERVICE, home.namespace))
    await home.client.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": settings.webhook_secret, "namespace": home.namespace},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in legacy.items()},
        }
    )
    async with serving(home, settings, Clock()):
        secret = await home.client.get("v1", "Secret", home.namespace, settings.webhook_secret)
        assert secret is not None
        stored = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert "ca-signing.crt" not in stored
        assert_no_ca_key(stored)


def test_a_configuration_reapplied_without_ca_bundle_gets_it_back(local: Cluster) -> None:
    """What ``helm upgrade`` does to the session operator's own configuration: the
    chart's webhooks again, without the caBundle only the operator knows. Its
    watch on the configuration puts the bundle back (the certificate check,
    every few minutes, would be too late: the API server could not call it)."""
    kind = "mutatingwebhookconfiguration"
    live = local.get(kind, RELEASE) or {}
    bundle = live["webhooks"][0]["clientConfig"]["caBundle"]
    since = datetime.datetime.now(datetime.UTC)
    for webhook in live["webhooks"]:
        del webhook["clientConfig"]["caBundle"]
    result = local.kubectl(
        "patch",
        kind,
        RELEASE,
        "--type=merge",
        "-p",
        json.dumps({"webhooks": live["webhooks"]}),
        "-o",
        "json",
    )
    stripped = json.loads(result)  # as the patch left it, before anyone reacted
    assert "caBundle" not in stripped["webhooks"][0]["clientConfig"]

    def restored() -> bool:
        found = local.get(kind, RELEASE) or {}
        return all(w["clientConfig"].get("caBundle") == bundle for w in found["webhooks"])

    try:
        local.wait_for("the caBundle back", restored, timeout=30)
    finally:
        if not restored():  # the session's later tests need their webhooks trusted
            for webhook in live["webhooks"]:
                webhook["clientConfig"]["caBundle"] = bundle
            patch = json.dumps({"webhooks": live["webhooks"]})
            local.kubectl("patch", kind, RELEASE, "--type=merge", "-p", patch)
    patched = [
        event
        for event in local.requests(OPERATOR_USER, since, frozenset({"patch"}))
        if (event.get("objectRef") or {}).get("resource") == "mutatingwebhookconfigurations"
    ]
    assert patched, "restored by someone other than the operator"


async def test_with_cert_manager_the_mounted_files_are_served_and_reloaded(
    home: Home, tmp_path: Path
) -> None:
    def mount(material: Material) -> None:
        # As the kubelet updates a Secret volume: new files swapped in whole.
        for name, text in (("tls.crt", material.cert), ("tls.key", material.key)):
            staged = tmp_path / f".{name}"
            staged.write_text(text)
            staged.replace(tmp_path / name)

    first = issue(serving_names(SERVICE, home.namespace), T0)
    mount(first)
    settings = webhook_settings(home, webhook_cert_dir=str(tmp_path))
    async with serving(home, settings, Clock()) as admission:
        context = ssl.create_default_context(cadata=first.ca_bundle)
        served = await served_certificate(home, admission.port, context)
        assert served == x509.load_pem_x509_certificate(first.cert.encode())
        second = issue(serving_names(SERVICE, home.namespace), T0)
        mount(second)
        os.utime(tmp_path / "tls.crt", (time.time() + 5, time.time() + 5))  # a later mtime
        await admission.keeper.check()
        context = ssl.create_default_context(cadata=second.ca_bundle)
        served = await served_certificate(home, admission.port, context)
        assert served == x509.load_pem_x509_certificate(second.cert.encode())
    # cert-manager owns the Secret and caBundle: the operator wrote neither.
    assert await home.client.get("v1", "Secret", home.namespace, settings.webhook_secret) is None
    configuration = await home.client.get(
        ADMISSION, "MutatingWebhookConfiguration", None, home.configuration
    )
    assert configuration is not None
    assert "caBundle" not in configuration["webhooks"][0]["clientConfig"]


def test_the_refusal_docs_admission_shows_is_what_kubectl_prints(local: Cluster) -> None:
    """docs/admission.md's example, run: the command and the output it shows."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "admission.md").read_text()
    block = text.split("## Validation", 1)[1].split("```", 2)[1]
    _language, command, *shown = [line for line in block.strip().splitlines() if line]
    assert command.startswith("$ kubectl apply -f ")
    path = command.removeprefix("$ kubectl apply -f ")
    kubectl = root / ".tools" / "bin" / "kubectl"
    done = subprocess.run(
        [str(kubectl), "apply", "-f", path],
        capture_output=True,
        text=True,
        cwd=root,  # the path as the page shows it
        env=local.env(),
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip() == "\n".join(shown), done.stderr
