"""#22 item 8: the webhook's CA private key is never stored.

It used to sit in the certificate's Secret (``ca.key``) beside the serving key,
good for ten years: whoever could read that Secret once could sign serving
certificates the API server trusts for the webhooks until the CA expired. Now
each CA signs its one serving certificate in memory and its key is dropped;
a renewal is a new CA and certificate, staged in the bundle first and served
``PROMOTE_AFTER`` later. A Secret an older version wrote loses its ``ca.key``
at the first check, its certificate is renewed at once, and that CA leaves the
bundle once its successor is served.
"""

from __future__ import annotations

import base64
import copy
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rampart_operator.admission.certs import (
    PROMOTE_AFTER,
    SERVING_LIFETIME,
    Material,
    issue,
    plan,
    serving_names,
)
from rampart_operator.admission.keeper import CertKeeper, server_context
from rampart_operator.kube import ApiError
from rampart_operator.settings import OperatorSettings

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NAMES = serving_names("rampart-webhook", "rampart")
KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def private_keys(data: dict[str, str]) -> dict[str, Any]:
    """Every value of the Secret that is a private key, by its Secret key."""
    found = {}
    for name, text in data.items():
        try:
            found[name] = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            continue
    return found


def assert_no_ca_key(data: dict[str, str]) -> None:
    assert "ca.key" not in data
    cas = x509.load_pem_x509_certificates(data["ca.crt"].encode())
    ca_keys = [ca.public_key() for ca in cas]
    keys = private_keys(data)
    assert set(keys) <= {"tls.key", "next.key"}
    for name, key in keys.items():
        assert key.public_key() not in ca_keys, f"{name} is a CA's key"
        cert = x509.load_pem_x509_certificate(data[name.replace(".key", ".crt")].encode())
        assert key.public_key() == cert.public_key()
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_the_secret_holds_no_ca_private_key_through_every_change() -> None:
    material = issue(NAMES, T0)
    assert_no_ca_key(material.to_secret())
    steps = [
        (NAMES, T0 + SERVING_LIFETIME * 0.7),  # renewal staged
        (NAMES, T0 + SERVING_LIFETIME * 0.7 + PROMOTE_AFTER),  # and served
        (serving_names("webhook", "ops"), T0 + SERVING_LIFETIME * 0.8),  # other names
        (serving_names("webhook", "ops"), T0 + SERVING_LIFETIME * 5),  # all expired
    ]
    for names, when in steps:
        changed = plan(material, names, when)
        assert changed is not None
        material = changed
        assert_no_ca_key(material.to_secret())
        assert Material.from_secret(material.to_secret()) == material


# --- what an older version stored ------------------------------------------------------


def legacy_secret(now: datetime.datetime) -> dict[str, str]:
    """As the operator wrote it before: a ten-year CA with its key beside the serving key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rampart-webhook-ca-20260101")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[2])]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SERVING_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in NAMES]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def pem_key(k: ec.EllipticCurvePrivateKey) -> str:
        return k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    return {
        "ca.crt": ca_pem,
        "ca-signing.crt": ca_pem,
        "ca.key": pem_key(ca_key),
        "tls.crt": leaf.public_bytes(serialization.Encoding.PEM).decode(),
        "tls.key": pem_key(key),
    }


def test_an_older_versions_ca_is_replaced_at_once_and_then_distrusted() -> None:
    data = legacy_secret(T0)
    current = Material.from_secret(data)
    assert current is not None  # still served meanwhile: no outage on upgrade
    assert current.cert == data["tls.crt"]
    now = T0 + datetime.timedelta(days=1)  # its certificate is far from due
    staged = plan(current, NAMES, now)
    assert staged is not None
    assert staged.cert == data["tls.crt"]
    assert staged.next_cert
    promoted = plan(staged, NAMES, now + PROMOTE_AFTER)
    assert promoted is not None
    assert promoted.cert == staged.next_cert
    assert data["ca.crt"] in promoted.ca_bundle  # replicas still catching up
    # Soon after, the CA whose key was stored is trusted no more.
    retired = plan(promoted, NAMES, now + PROMOTE_AFTER * 2)
    assert retired is not None
    assert data["ca.crt"] not in retired.ca_bundle
    assert retired.cert == promoted.cert
    assert plan(retired, NAMES, now + PROMOTE_AFTER * 3) is None


# --- the keeper, against an API server in memory ---------------------------------------


class Api:
    """The Secret and the two webhook configurations; merge patches as RFC 7386 says."""

    def __init__(self, secret_data: dict[str, str] | None = None) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.log: list[str] = []
        self.version = 1
        for kind in KINDS:
            self.objects[kind, "rampart"] = {
                "metadata": {"name": "rampart"},
                "webhooks": [{"name": "w.rampart.dev", "clientConfig": {}}],
            }
        if secret_data is not None:
            encoded = {k: base64.b64encode(v.encode()).decode() for k, v in secret_data.items()}
            self.objects["Secret", "rampart-webhook-tls"] = {
                "metadata": {"name": "rampart-webhook-tls", "resourceVersion": "1"},
                "data": encoded,
            }

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.log.append(f"create {manifest['kind']}")
        manifest = copy.deepcopy(manifest)
        manifest["metadata"]["resourceVersion"] = str(self.version)
        self.objects[manifest["kind"], manifest["metadata"]["name"]] = manifest
        return manifest

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        self.log.append(f"patch {kind}")
        live = self.objects[kind, name]
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != live["metadata"].get("resourceVersion"):
            raise ApiError(409, "the object has been modified")

        def merge(target: dict[str, Any], changes: dict[str, Any]) -> None:
            for key, value in changes.items():
                if value is None:
                    target.pop(key, None)
                elif isinstance(value, dict) and isinstance(target.get(key), dict):
                    merge(target[key], value)
                else:
                    target[key] = copy.deepcopy(value)

        merge(live, patch)
        self.version += 1
        live["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(live)

    def secret(self) -> dict[str, str]:
        data = self.objects["Secret", "rampart-webhook-tls"]["data"]
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def ca_bundles(self) -> set[str]:
        return {
            base64.b64decode(w["clientConfig"]["caBundle"]).decode()
            for kind in KINDS
            for w in self.objects[kind, "rampart"]["webhooks"]
        }


class Clock:
    def __init__(self, now: datetime.datetime) -> None:
        self.now = now

    def __call__(self) -> datetime.datetime:
        return self.now


def keeper(api: Api, clock: Clock) -> CertKeeper:
    return CertKeeper(api, OperatorSettings(), server_context(), clock=clock)  # type: ignore[arg-type]


async def test_the_keeper_removes_a_stored_ca_key_and_stores_none() -> None:
    api = Api(legacy_secret(T0))
    kept = keeper(api, Clock(T0 + datetime.timedelta(days=1)))
    try:
        await kept.check()
    finally:
        kept.close()
    stored = api.secret()
    assert "ca.key" not in stored
    assert "ca-signing.crt" not in stored
    assert_no_ca_key(stored)


async def test_the_keeper_writes_the_bundle_before_it_serves_a_new_certificate() -> None:
    api = Api()
    clock = Clock(T0)
    kept = keeper(api, clock)
    loaded_when_patched: list[str | None] = []
    patch = api.merge_patch

    async def watching(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if args[1] in KINDS:
            loaded_when_patched.append(kept.loaded)
        return await patch(*args, **kwargs)

    api.merge_patch = watching  # type: ignore[method-assign]
    try:
        await kept.check()
        first = kept.loaded
        assert loaded_when_patched == [None, None]  # the bundle, then the certificate
        assert first == api.secret()["tls.crt"]
        assert_no_ca_key(api.secret())

        clock.now = T0 + SERVING_LIFETIME * 0.7
        await kept.check()
        assert kept.loaded == first  # staged: its CA is in caBundle, it is not served yet
        (bundle,) = api.ca_bundles()
        assert len(x509.load_pem_x509_certificates(bundle.encode())) == 2
        staged = api.secret()["next.crt"]

        clock.now += PROMOTE_AFTER
        await kept.check()
        assert kept.loaded == staged
        assert api.ca_bundles() == {bundle}  # already trusted for PROMOTE_AFTER
        assert "next.crt" not in api.secret()
        assert_no_ca_key(api.secret())
    finally:
        kept.close()
