"""Keeps the webhook server's certificate: in its Secret, in its TLS context, in caBundle.

Every replica runs one keeper. The first to find no Secret creates it; the
others read it (a create that loses the race gets 409 and reads). Renewal
writes with the Secret's resourceVersion, so of two replicas renewing at once
one wins and the other reads the winner's. After any change, each replica
sets ``caBundle`` on every webhook of the configurations named in the
settings, then loads the Secret's certificate into its live ``SSLContext``
(new handshakes use it; open connections finish on the old one): a
certificate is never served before the bundle that trusts it was written.
It sets ``caBundle`` again whenever those configurations change (a ``helm
upgrade`` re-applies them without a bundle).

The Secret holds no CA private key (``certs.py``); one written by an older
version that stored one (``ca.key``) has that key removed at the first check.

With cert-manager (``webhook_cert_dir``), the keeper only reloads the mounted
files when they change; cert-manager's CA injector owns ``caBundle``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509

from ..kube import ApiError, KubeClient
from ..metrics import OperatorMetrics
from ..settings import OperatorSettings
from .certs import Material, plan, serving_names

__all__ = ["WEBHOOK_KINDS", "CertKeeper", "server_context"]

log = logging.getLogger("rampart.admission")

ADMISSION = "admissionregistration.k8s.io/v1"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
Clock = Callable[[], datetime.datetime]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# TLS 1.2's forward-secret AEAD suites only (no CBC, no RSA key exchange), as
# Mozilla's "intermediate" profile; TLS 1.3's suites are all AEAD already.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


def _decode(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def _encode(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def _what_changed(current: Material | None, wanted: Material) -> str:
    if current is None:
        return "issued"
    if wanted.cert == current.next_cert:
        return "renewed: the staged certificate is served now"
    if wanted.cert != current.cert:
        return "replaced"
    if wanted.next_cert and wanted.next_cert != current.next_cert:
        return "renewal staged: its CA joins caBundle, the certificate is served later"
    return "stored again without a CA key or a retired CA"


class CertKeeper:
    def __init__(
        self,
        client: KubeClient,
        settings: OperatorSettings,
        context: ssl.SSLContext,
        metrics: OperatorMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.context = context
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock or _now
        self.loaded: str | None = None  # the certificate PEM the context holds
        self.ca_bundle: str | None = None
        self._files: tuple[float, float] | None = None  # cert-manager files' mtimes
        self._dir = tempfile.TemporaryDirectory(prefix="rampart-webhook-")

    def close(self) -> None:
        self._dir.cleanup()

    async def run(self) -> None:
        """Checks every ``webhook_check_interval`` seconds; errors wait for the next check."""
        while True:
            await asyncio.sleep(self.settings.webhook_check_interval)
            try:
                await self.check()
            except (ApiError, OSError, ValueError) as error:  # SSLError is an OSError
                log.warning("webhook certificate check failed (%s); trying again later", error)

    async def check(self) -> None:
        if self.settings.webhook_cert_dir:
            self._reload_files()
            return
        material = await self._stored_material()
        self.ca_bundle = material.ca_bundle
        # The bundle first: a new certificate is served only once the API server may trust it.
        await self.sync_ca_bundle()
        self._load(material.cert, material.key)

    async def _stored_material(self) -> Material:
        """The Secret's certificate, renewed (and written) first if it is due."""
        settings = self.settings
        names = serving_names(settings.webhook_service, settings.namespace, settings.webhook_url)
        for _ in range(3):
            secret = await self.client.get(
                "v1", "Secret", settings.namespace, settings.webhook_secret
            )
            stored = _decode(secret) if secret else {}
            current = Material.from_secret(stored) if secret else None
            wanted = plan(current, names, self.clock())
            if wanted is None:
                assert current is not None
                if stored == current.to_secret():
                    return current
                wanted = current  # rewritten without what it should not hold (ca.key)
            try:
                await self._write(secret, wanted)
            except ApiError as error:
                if error.status == 409:
                    continue  # another replica wrote first: use what it wrote
                raise
            log.info("webhook certificate %s", _what_changed(current, wanted))
            return wanted
        raise ApiError(409, f"Secret {settings.webhook_secret} keeps changing under the keeper")

    async def _write(self, secret: dict[str, Any] | None, material: Material) -> None:
        settings = self.settings
        data = _encode(material.to_secret())
        if secret is None:
            await self.client.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "type": "Opaque",
                    "metadata": {
                        "name": settings.webhook_secret,
                        "namespace": settings.namespace,
                        "labels": {"app.kubernetes.io/managed-by": "rampart"},
                    },
                    "data": data,
                }
            )
            return
        version = secret["metadata"].get("resourceVersion")
        # A merge patch keeps keys it does not name: null removes them (ca.key, next.*).
        removed: dict[str, str | None] = {
            k: None for k in secret.get("data") or {} if k not in data
        }
        await self.client.merge_patch(
            "v1",
            "Secret",
            settings.namespace,
            settings.webhook_secret,
            # The resourceVersion makes the API server refuse a write over a newer one.
            {
                "metadata": {"resourceVersion": version} if version else {},
                "data": {**removed, **data},
            },
        )

    def _load(self, cert: str, key: str) -> None:
        if cert == self.loaded:
            return
        directory = Path(self._dir.name)
        cert_path, key_path = directory / "tls.crt", directory / "tls.key"
        cert_path.write_text(cert)
        key_path.touch(mode=0o600)
        key_path.write_text(key)
        self.context.load_cert_chain(cert_path, key_path)
        key_path.unlink()
        self.loaded = cert
        expiry = x509.load_pem_x509_certificate(cert.encode()).not_valid_after_utc
        self.metrics.certificate_expiry.set(expiry.timestamp())
        log.info("webhook server certificate loaded, valid until %s", expiry.isoformat())

    def _reload_files(self) -> None:
        directory = Path(self.settings.webhook_cert_dir)
        cert_path, key_path = directory / "tls.crt", directory / "tls.key"
        stamps = (os.stat(cert_path).st_mtime, os.stat(key_path).st_mtime)
        if stamps != self._files:
            self._load(cert_path.read_text(), key_path.read_text())
            self._files = stamps

    async def sync_ca_bundle(self) -> None:
        """Set caBundle on every webhook of both configurations where it differs."""
        if self.ca_bundle is None or self.settings.webhook_cert_dir:
            return
        encoded = base64.b64encode(self.ca_bundle.encode()).decode()
        name = self.settings.webhook_configuration
        for kind in WEBHOOK_KINDS:
            configuration = await self.client.get(ADMISSION, kind, None, name)
            if configuration is None:
                continue  # webhooks turned off in the chart
            webhooks = configuration.get("webhooks") or []
            if all((w.get("clientConfig") or {}).get("caBundle") == encoded for w in webhooks):
                continue
            for webhook in webhooks:
                webhook.setdefault("clientConfig", {})["caBundle"] = encoded
            # Merge patch replaces the list whole: it is sent back with every field.
            await self.client.merge_patch(ADMISSION, kind, None, name, {"webhooks": webhooks})
            log.info("%s %s: caBundle set", kind, name)
