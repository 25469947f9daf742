"""#22 item 8: the config checksum of Secret data is keyed, not a bare hash.

The checksum of the ConfigMaps and Secrets a canary's pods read is in
``status.revisions[].configChecksum`` and, through the revision id, in the
Deployment's ``rampart.dev/revision`` annotation. As an unsalted SHA-256 cut to
64 bits, anyone who reads either could check guesses of a weak Secret value
offline. It is now an HMAC-SHA256 (128 bits shown) under a key derived from
the operator's alert token and the HardenedService's uid: the same inputs give
the same checksum (an operator restart rolls no pod), a changed Secret gives
another (its pods roll), and nobody without the token can recompute it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pytest

from rampart_operator.api import parse_spec
from rampart_operator.revisions import checksum, checksum_key, config_references
from rampart_operator.rollout import RolloutReads, plan_rollout

TOKEN = "alert-token-the-chart-generated"
UID = "6f1c1f0e-5d4a-4a8e-9a39-0d3f3c7f2b11"
SECRET = ("Secret", "db")
TEMPLATE = {
    "spec": {
        "containers": [
            {
                "name": "app",
                "image": "ghcr.io/acme/checkout:1",
                "envFrom": [{"secretRef": {"name": "db"}}],
            }
        ]
    }
}


def secret(password: str) -> dict[str, Any]:
    return {"data": {"password": base64.b64encode(password.encode()).decode()}}


def unkeyed(objects: Mapping[tuple[str, str], dict[str, Any] | None]) -> str:
    """The checksum as it was: what anyone could compute for a guessed value."""
    digest = hashlib.sha256()
    for (kind, name), live in sorted(objects.items()):
        data = None if live is None else [live.get("data"), live.get("binaryData")]
        digest.update(json.dumps([kind, name, data], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def test_a_guess_cannot_be_checked_without_the_operators_token() -> None:
    objects = {SECRET: secret("hunter2")}
    shown = checksum(objects, checksum_key(UID, TOKEN))
    assert len(shown) == 32  # 128 bits
    int(shown, 16)
    # Neither the old scheme nor the uid alone (on the Deployment's ownerReferences)
    # reproduces it from the right guess.
    assert shown[:16] != unkeyed(objects)
    assert shown != checksum(objects, checksum_key(UID))
    assert shown != checksum(objects, checksum_key(UID, "another-token"))
    # One service's checksum says nothing of another's with the same Secret data.
    assert shown != checksum(objects, checksum_key("another-uid", TOKEN))


def test_without_a_token_the_uid_still_keys_it() -> None:
    objects = {SECRET: secret("hunter2")}
    assert checksum(objects, checksum_key(UID)) != checksum(objects, checksum_key("other"))
    assert checksum(objects, checksum_key(UID))[:16] != unkeyed(objects)


def test_the_same_key_gives_the_same_checksum_and_a_changed_secret_another() -> None:
    # As after an operator restart: the key is derived again from the same inputs.
    before = checksum({SECRET: secret("hunter2")}, checksum_key(UID, TOKEN))
    assert before == checksum({SECRET: secret("hunter2")}, checksum_key(UID, TOKEN))
    changed = checksum({SECRET: secret("correct horse")}, checksum_key(UID, TOKEN))
    missing = checksum({SECRET: None}, checksum_key(UID, TOKEN))
    assert len({before, changed, missing}) == 3


def hardened_service() -> dict[str, Any]:
    return {
        "apiVersion": "rampart.dev/v1alpha1",
        "kind": "HardenedService",
        "metadata": {"name": "checkout", "namespace": "shop", "uid": UID},
        "spec": {
            "template": TEMPLATE,
            "port": 8080,
            "replicas": 2,
            "canary": {"steps": [{"weight": 10, "pause": "1m"}, {"weight": 100}]},
        },
    }


def target_revision(password: str, token: str) -> dict[str, Any]:
    resource = hardened_service()
    # What observe_rollout reads: the Secret the template uses; no Deployment yet.
    reads = RolloutReads({SECRET: secret(password)})
    plan = plan_rollout(resource, parse_spec(resource), {}, reads, 0.0, checksum_secret=token)
    (entry,) = [r.to_status() for r in plan.revisions]
    return entry


@pytest.mark.parametrize("password", ["hunter2", "123456"])
def test_what_the_status_and_the_revision_show_is_keyed(password: str) -> None:
    entry = target_revision(password, TOKEN)
    assert config_references(TEMPLATE) == [SECRET]
    assert entry["configChecksum"] == checksum({SECRET: secret(password)}, checksum_key(UID, TOKEN))
    assert entry["configChecksum"][:16] != unkeyed({SECRET: secret(password)})
    assert password not in json.dumps(entry)
    # Another operator start with the same token: the same revision, no pod rolls.
    assert target_revision(password, TOKEN) == entry
    # The Secret changed: a new revision, its pods roll.
    assert (target_revision(password + "!", TOKEN))["revision"] != entry["revision"]
    # A new token re-keys every checksum (and so rolls each canary once).
    assert (target_revision(password, "rotated"))["revision"] != entry["revision"]
