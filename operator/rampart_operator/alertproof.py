"""The label that proves an alert was rendered by this operator for one HardenedService.

The receiver and the poller match an alert to a HardenedService by its
``namespace`` and ``hardenedservice`` labels, and an alert for a service in
canary rolls that canary back. Anyone who can write a PrometheusRule (or post
to Alertmanager) can set those labels to another tenant's service, so they
alone prove nothing: every rule the operator renders also carries
``rampart_proof``, an HMAC of ``namespace/name`` under a key derived from the
alert receiver's token, and only alerts whose proof matches count. A tenant
can read the proof of its own services (it is on their PrometheusRule) and so
label its own alerts the same way, never another namespace's.

Without a token (``rampart-operator render`` offline, a local run without
RAMPART_ALERT_TOKEN) there is no key: nothing is rendered and labels alone match.

>>> key = proof_key("s3cret")
>>> proof(key, "shop", "checkout") == proof(key, "shop", "checkout")
True
>>> proof(key, "shop", "checkout") == proof(key, "other", "checkout")
False
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["PROOF_LABEL", "proof", "proof_key", "proven"]

PROOF_LABEL = "rampart_proof"


def proof_key(token: str) -> bytes | None:
    """The proof key, derived from the receiver's token; None without one."""
    if not token:
        return None
    return hmac.new(token.encode(), b"rampart alert proof v1", hashlib.sha256).digest()


def proof(key: bytes, namespace: str, name: str) -> str:
    """The label value for ``namespace/name`` (128 bits, hex)."""
    return hmac.new(key, f"{namespace}/{name}".encode(), hashlib.sha256).hexdigest()[:32]


def proven(key: bytes | None, namespace: str, name: str, offered: object) -> bool:
    """Whether an alert's ``rampart_proof`` label is this service's (always, without a key)."""
    if key is None:
        return True
    if not isinstance(offered, str):
        return False
    return hmac.compare_digest(offered.encode(), proof(key, namespace, name).encode())
