"""#22 item 8: the webhook server offers TLS 1.2 only with forward-secret AEAD suites.

A real handshake against ``server_context()`` with a certificate the operator
issues: a client that offers only CBC suites (or TLS 1.1) is refused, one that
offers GCM is served.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
import tempfile
from pathlib import Path

import pytest

from rampart_operator.admission.certs import issue, serving_names
from rampart_operator.admission.keeper import server_context

NOW = datetime.datetime.now(datetime.UTC)
SERVICE = "rampart-webhook.rampart.svc"


def serving(client: ssl.SSLContext) -> ssl.SSLContext:
    """The operator's server context with a certificate it issued, trusted by ``client``."""
    material = issue(serving_names("rampart-webhook", "rampart"), NOW)
    server = server_context()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_text(material.cert)
        key.write_text(material.key)
        server.load_cert_chain(cert, key)
    client.load_verify_locations(cadata=material.ca_bundle)
    return server


async def handshake(client: ssl.SSLContext) -> str:
    """The cipher the server chose for ``client``; raises when it refused."""
    server = serving(client)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname=SERVICE
        )
        cipher = writer.get_extra_info("cipher")[0]
        writer.close()
        return str(cipher)
    finally:
        listener.close()


def tls12(ciphers: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(ciphers)
    return context


async def test_gcm_is_served():
    assert "GCM" in await handshake(tls12("ECDHE+AESGCM"))
    assert await handshake(ssl.create_default_context())  # TLS 1.3


@pytest.mark.parametrize(
    "ciphers", ["ECDHE+AES+SHA1:ECDHE+AES+SHA256:ECDHE+AES+SHA384", "AES128-SHA"]
)
async def test_cbc_suites_are_refused(ciphers):
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await handshake(tls12(ciphers + ":!AESGCM:!CHACHA20"))
