"""The webhook server's certificates: a CA of its own and a serving certificate it signs.

Pure: every function takes the time it works at. The operator keeps the
result in one Secret shared by all its replicas (``keeper.py``) and puts the
CA bundle into the webhook configurations, so no cert-manager is needed.

Rotation, the way cert-manager does it by default: a certificate is renewed
once two thirds of its life have passed. When the CA itself is renewed, the
bundle keeps the old CA beside the new one until the old one expires, so a
replica still serving a certificate from the old CA stays trusted while it
catches up.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_LIFETIME",
    "SERVING_LIFETIME",
    "Material",
    "due_for_renewal",
    "issue",
    "plan",
    "serving_names",
]

CA_LIFETIME = datetime.timedelta(days=3650)
SERVING_LIFETIME = datetime.timedelta(days=365)
# Renew once this share of a certificate's life has passed.
RENEW_AFTER = 2 / 3
# Issued a little in the past, so clocks a few minutes apart agree it is valid.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Material:
    """PEM text. ``ca_bundle`` is every CA clients should trust; ``ca_cert`` signs now."""

    ca_bundle: str
    ca_cert: str
    ca_key: str
    cert: str
    key: str

    def to_secret(self) -> dict[str, str]:
        """The Secret's ``stringData``; ``ca.crt`` holds the bundle."""
        return {
            "ca.crt": self.ca_bundle,
            "ca-signing.crt": self.ca_cert,
            "ca.key": self.ca_key,
            "tls.crt": self.cert,
            "tls.key": self.key,
        }

    @classmethod
    def from_secret(cls, data: dict[str, str]) -> Material | None:
        """From a Secret's decoded data; None when any part is missing or unreadable."""
        try:
            material = cls(
                ca_bundle=data["ca.crt"],
                ca_cert=data["ca-signing.crt"],
                ca_key=data["ca.key"],
                cert=data["tls.crt"],
                key=data["tls.key"],
            )
            x509.load_pem_x509_certificate(material.ca_cert.encode())
            x509.load_pem_x509_certificate(material.cert.encode())
            serialization.load_pem_private_key(material.key.encode(), password=None)
            serialization.load_pem_private_key(material.ca_key.encode(), password=None)
        except (KeyError, ValueError):
            return None
        return material


def serving_names(service: str, namespace: str, url: str = "") -> list[str]:
    """The names the API server may use to reach the webhook server.

    The Service's names, and the host of ``url`` when the operator runs outside
    the cluster and the webhook configurations call it there.

    >>> serving_names("rampart-webhook", "rampart", "https://127.0.0.1:9443")[-1]
    '127.0.0.1'
    """
    names = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
    host = urlsplit(url).hostname if url else None
    if host and host not in names:
        names.append(host)
    return names


def _general_name(name: str) -> x509.GeneralName:
    """An IP address SAN for an address (Go's TLS checks IPs only there), a DNS one otherwise."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _new_ca(now: datetime.datetime) -> tuple[str, str]:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rampart-webhook-ca-{now:%Y%m%d}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem_cert(cert), _pem_key(key)


def _serving(
    ca_cert_pem: str, ca_key_pem: str, names: list[str], now: datetime.datetime
) -> tuple[str, str]:
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    common_name = names[min(2, len(names) - 1)]  # the Service's .svc name
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        # Never outlives the CA that signs it.
        .not_valid_after(min(now + SERVING_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_cert(cert), _pem_key(key)


def _certificates(bundle: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(bundle.encode()) if bundle.strip() else []


def due_for_renewal(cert_pem: str, now: datetime.datetime) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * RENEW_AFTER


def _names(cert_pem: str) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    addresses = extension.value.get_values_for_type(x509.IPAddress)
    return [*extension.value.get_values_for_type(x509.DNSName), *map(str, addresses)]


def issue(names: list[str], now: datetime.datetime) -> Material:
    """A new CA and a serving certificate for ``names``."""
    ca_cert, ca_key = _new_ca(now)
    cert, key = _serving(ca_cert, ca_key, names, now)
    return Material(ca_bundle=ca_cert, ca_cert=ca_cert, ca_key=ca_key, cert=cert, key=key)


def plan(current: Material | None, names: list[str], now: datetime.datetime) -> Material | None:
    """What the Secret should hold from now on, or None when ``current`` still serves."""
    if current is None:
        return issue(names, now)
    ca_cert, ca_key = current.ca_cert, current.ca_key
    new_ca = due_for_renewal(ca_cert, now)
    if new_ca:
        ca_cert, ca_key = _new_ca(now)
    stale_cert = (
        new_ca
        or due_for_renewal(current.cert, now)
        or sorted(_names(current.cert)) != sorted(names)
    )
    # Expired CAs leave the bundle; the signing CA is always in it.
    trusted = [
        c
        for c in _certificates(current.ca_bundle)
        if c.not_valid_after_utc > now and _pem_cert(c) != ca_cert
    ]
    bundle = ca_cert + "".join(_pem_cert(c) for c in trusted)
    if not stale_cert and bundle == current.ca_bundle:
        return None
    cert, key = (current.cert, current.key)
    if stale_cert:
        cert, key = _serving(ca_cert, ca_key, names, now)
    return Material(ca_bundle=bundle, ca_cert=ca_cert, ca_key=ca_key, cert=cert, key=key)
