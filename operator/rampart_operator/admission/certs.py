"""The webhook server's certificates: a serving certificate, and a CA that signed it once.

Pure: every function takes the time it works at. The operator keeps the
result in one Secret shared by all its replicas (``keeper.py``) and puts the
CA bundle into the webhook configurations, so no cert-manager is needed.

No CA private key is ever stored: each CA signs exactly one serving
certificate, in memory, and its key is dropped. Whoever reads the Secret gets
the serving key (which the server must have) but can sign nothing the API
server would trust. So a renewal is a new CA and a new serving certificate
(one pair, same life), once two thirds of the serving certificate's life
have passed, in two steps:

1. staged: the new CA joins the bundle (``ca.crt``) and its certificate waits
   in ``next.crt``/``next.key``; the servers keep serving the current one;
2. promoted, at the first check ``PROMOTE_AFTER`` later: the new certificate
   is served. By then the API server (and anyone else following ``ca.crt``)
   has had the new CA for that long.

An older CA stays in the bundle until it expires, with the certificate it
signed: a replica that has not caught up yet still serves that one, trusted.
A certificate that cannot serve at all (gone, expired, for other names) is
replaced at once.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_LIFETIME",
    "PROMOTE_AFTER",
    "SERVING_LIFETIME",
    "Material",
    "due_for_renewal",
    "issue",
    "plan",
    "serving_names",
]

SERVING_LIFETIME = datetime.timedelta(days=365)
# A CA signs one serving certificate and is never used again: it lives as long.
CA_LIFETIME = SERVING_LIFETIME
# Renew once this share of a certificate's life has passed.
RENEW_AFTER = 2 / 3
# How long a renewed certificate waits, its CA already in the bundle, before it is served.
PROMOTE_AFTER = datetime.timedelta(hours=1)
# Issued a little in the past, so clocks a few minutes apart agree it is valid.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Material:
    """PEM text. ``ca_bundle`` is every CA clients should trust; ``cert`` is served.

    ``next_cert`` and ``next_key`` are the staged successor (empty when none),
    signed by a CA already in ``ca_bundle``. There is no CA key: see the module.
    """

    ca_bundle: str
    cert: str
    key: str
    next_cert: str = ""
    next_key: str = ""

    def to_secret(self) -> dict[str, str]:
        """The Secret's data; ``ca.crt`` holds the bundle."""
        data = {"ca.crt": self.ca_bundle, "tls.crt": self.cert, "tls.key": self.key}
        if self.next_cert:
            data |= {"next.crt": self.next_cert, "next.key": self.next_key}
        return data

    @classmethod
    def from_secret(cls, data: dict[str, str]) -> Material | None:
        """From a Secret's decoded data; None when any part is missing or unreadable.

        Keys it does not know (a CA key an older version stored) are ignored;
        the keeper removes them. An unreadable staged successor counts as none.
        """
        try:
            material = cls(ca_bundle=data["ca.crt"], cert=data["tls.crt"], key=data["tls.key"])
            if not _certificates(material.ca_bundle):
                return None
            _check_pair(material.cert, material.key)
        except (KeyError, ValueError, TypeError):
            return None
        try:
            next_cert, next_key = data["next.crt"], data["next.key"]
            _check_pair(next_cert, next_key)
        except (KeyError, ValueError, TypeError):
            return material
        return cls(material.ca_bundle, material.cert, material.key, next_cert, next_key)


def _check_pair(cert_pem: str, key_pem: str) -> None:
    """Raises ValueError unless ``key_pem`` is the private key of ``cert_pem``."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    if key.public_key() != cert.public_key():
        raise ValueError("the key is not the certificate's")


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


def _new_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    serial = x509.random_serial_number()
    # Unique: two CAs of one day (a renewal, then other names) are told apart by name too.
    common_name = f"rampart-webhook-ca-{now:%Y%m%d%H%M%S}-{serial:x}"[:64]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
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
    return cert, key


def _serving(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: list[str],
    now: datetime.datetime,
) -> tuple[str, str]:
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
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_cert(cert), _pem_key(key)


def _pair(names: list[str], now: datetime.datetime) -> tuple[str, str, str]:
    """A new CA's certificate, and the one serving certificate and key it signs.

    The CA's private key never leaves this function: nothing can sign with it again.
    """
    ca_cert, ca_key = _new_ca(now)
    cert, key = _serving(ca_cert, ca_key, names, now)
    del ca_key
    return _pem_cert(ca_cert), cert, key


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


def _signed_by_one_of(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _serves(
    cert_pem: str, names: list[str], trusted: list[x509.Certificate], now: datetime.datetime
) -> bool:
    """Whether ``cert_pem`` is for ``names``, valid now, and signed by a CA in ``trusted``."""
    if not cert_pem:
        return False
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return (
        cert.not_valid_before_utc <= now < cert.not_valid_after_utc
        and sorted(_names(cert_pem)) == sorted(names)
        and _signed_by_one_of(cert, trusted)
    )


def _issued_at(cert_pem: str) -> datetime.datetime:
    return x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_before_utc + BACKDATE


def issue(names: list[str], now: datetime.datetime) -> Material:
    """A new CA and a serving certificate for ``names``, served at once; no CA key kept."""
    ca_cert, cert, key = _pair(names, now)
    return Material(ca_bundle=ca_cert, cert=cert, key=key)


def _legacy(ca: x509.Certificate) -> bool:
    """A CA that outlives any this version issues: an older one's, whose key was stored."""
    return ca.not_valid_after_utc - ca.not_valid_before_utc > CA_LIFETIME + BACKDATE


def plan(current: Material | None, names: list[str], now: datetime.datetime) -> Material | None:
    """What the Secret should hold from now on, or None when ``current`` still serves."""
    if current is None:
        return issue(names, now)
    # Expired CAs leave the bundle; the newest comes first.
    trusted = [c for c in _certificates(current.ca_bundle) if c.not_valid_after_utc > now]
    bundle = [_pem_cert(c) for c in trusted]
    cert, key = current.cert, current.key
    next_cert, next_key = current.next_cert, current.next_key
    if not _serves(next_cert, names, trusted, now):
        next_cert = next_key = ""  # for other names, or its CA is gone: start over
    served = _serves(cert, names, trusted, now)
    # A certificate from a CA whose key an older version stored is replaced now.
    exposed = served and _signed_by_one_of(
        x509.load_pem_x509_certificate(cert.encode()), [c for c in trusted if _legacy(c)]
    )
    if not served:
        # Nothing to keep serving meanwhile: the successor now, or a new pair.
        if next_cert:
            cert, key, next_cert, next_key = next_cert, next_key, "", ""
        else:
            ca_cert, cert, key = _pair(names, now)
            bundle.insert(0, ca_cert)
    elif next_cert and now >= _issued_at(next_cert) + PROMOTE_AFTER:
        cert, key, next_cert, next_key = next_cert, next_key, "", ""
    elif not next_cert and (exposed or due_for_renewal(cert, now)):
        ca_cert, next_cert, next_key = _pair(names, now)
        bundle.insert(0, ca_cert)
    # An older version's CA (its key was stored) leaves once nothing in the Secret
    # is from it and its successor, issued 2 x PROMOTE_AFTER ago, has been served
    # for about PROMOTE_AFTER: time for every replica to have loaded it.
    in_use = [x509.load_pem_x509_certificate(c.encode()) for c in (cert, next_cert) if c]
    retire = now >= _issued_at(cert) + 2 * PROMOTE_AFTER
    bundle = [
        pem
        for pem in bundle
        if not _legacy(ca := x509.load_pem_x509_certificate(pem.encode()))
        or not retire
        or any(_signed_by_one_of(c, [ca]) for c in in_use)
    ]
    wanted = Material("".join(bundle), cert, key, next_cert, next_key)
    return None if wanted == current else wanted
