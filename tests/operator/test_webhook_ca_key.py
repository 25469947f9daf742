"""#22 item 8: the webhook's CA private key is never stored.

It used to sit in the certificate's Secret (``ca.key``) beside the serving key,
good for ten years: whoever could read that Secret once could sign serving
certificates the API server trusts for the webhooks until the CA expired. Now
each CA signs its one serving certificate in memory and its key is dropped;
a renewal is a new CA and certificate, staged in the bundle first and served
``PROMOTE_AFTER`` later. A Secret an older version wrote loses its ``ca.key``
at the first check, its certificate is renewed at once, and that CA leaves the
bundle once its successor is served. What the keeper writes is checked on the
real API server (e2e/test_admission.py); here, what it plans.
"""

from __future__ import annotations

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


def legacy_secret(now: datetime.datetime, names: list[str] = NAMES) -> dict[str, str]:
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
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[-1])]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SERVING_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
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
