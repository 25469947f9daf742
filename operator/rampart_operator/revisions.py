"""What version of the application a spec asks for, as a revision id; no I/O.

A revision is the application's pod template (before the sidecar is added)
together with a checksum of every ConfigMap and Secret it reads: changing
either starts a canary, as in Flagger. The sidecar's own settings are not
part of it; they apply to stable and canary pods alike.

The checksum is an HMAC-SHA256 (128 bits shown) under a key of the
HardenedService's own (``checksum_key``): it shows in the status and, through
the revision id, on the Deployment's pod template, and an unkeyed hash of a
weak Secret value could be checked against guesses by anyone who reads either.
The key comes from the operator's secret (the alert receiver's token) and the
HardenedService's uid; without a token, from the uid alone, which keeps one
service's checksums from being compared with another's but is readable by
whoever reads the Deployment's ownerReferences: set RAMPART_ALERT_TOKEN.

``spec.template`` (or ``spec.image``) is the version the service starts
from. ``spec.canary.template`` replaces it, and ``spec.canary.image``
replaces the image of its first container: either way that is the version
the service moves to, through the canary steps.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .api import HardenedServiceSpec
from .api.fields import Object

__all__ = [
    "Revision",
    "app_template",
    "checksum",
    "checksum_key",
    "config_references",
    "revision",
    "target_template",
]

Reference = tuple[str, str]  # ("ConfigMap" | "Secret", name)


@dataclass(frozen=True)
class Revision:
    id: str
    template: Object  # the application's PodTemplateSpec
    config: str  # checksum of the ConfigMaps and Secrets it reads

    def to_status(self) -> Object:
        return {"revision": self.id, "template": self.template, "configChecksum": self.config}

    @classmethod
    def from_status(cls, entry: Object) -> Revision:
        return cls(entry["revision"], entry["template"], entry.get("configChecksum", ""))


def app_template(spec: HardenedServiceSpec) -> Object:
    """The application's pod template as the spec gives it (``image`` expanded)."""
    if spec.template is not None:
        return copy.deepcopy(spec.template)
    return {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": spec.image,
                    "ports": [{"name": "app", "containerPort": spec.port, "protocol": "TCP"}],
                }
            ]
        }
    }


def target_template(spec: HardenedServiceSpec) -> Object:
    """The template the service should end up running."""
    canary = spec.canary
    if canary is not None and canary.template is not None:
        return copy.deepcopy(canary.template)
    template = app_template(spec)
    if canary is not None and canary.image is not None:
        template["spec"]["containers"][0]["image"] = canary.image
    return template


def config_references(template: Object) -> list[Reference]:
    """Every ConfigMap and Secret the pods read through volumes or the environment."""
    found: set[Reference] = set()
    pod = template.get("spec") or {}
    for volume in pod.get("volumes") or []:
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"].get("name", "")))
        if "secret" in volume:
            found.add(("Secret", volume["secret"].get("secretName", "")))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if "configMap" in source:
                found.add(("ConfigMap", source["configMap"].get("name", "")))
            if "secret" in source:
                found.add(("Secret", source["secret"].get("name", "")))
    for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                found.add(("ConfigMap", source["configMapRef"].get("name", "")))
            if "secretRef" in source:
                found.add(("Secret", source["secretRef"].get("name", "")))
        for variable in container.get("env") or []:
            origin = variable.get("valueFrom") or {}
            if "configMapKeyRef" in origin:
                found.add(("ConfigMap", origin["configMapKeyRef"].get("name", "")))
            if "secretKeyRef" in origin:
                found.add(("Secret", origin["secretKeyRef"].get("name", "")))
    return sorted(ref for ref in found if ref[1])


def checksum_key(owner_uid: str, operator_secret: str = "") -> bytes:
    """The HMAC key of one HardenedService's config checksums.

    Derived from ``operator_secret`` (the alert token; never shown anywhere)
    and the HardenedService's uid, so one service's checksums say nothing about
    another's. The same inputs give the same key: an operator restart changes
    no checksum, hence no revision and no pod. A new token changes them all.

    >>> checksum_key("u1", "s3cret") == checksum_key("u1", "s3cret")
    True
    >>> len({checksum_key("u1", "s3cret"), checksum_key("u2", "s3cret"), checksum_key("u1")})
    3
    """
    operator_key = hmac.new(
        operator_secret.encode(), b"rampart config checksum v1", hashlib.sha256
    ).digest()
    return hmac.new(operator_key, owner_uid.encode(), hashlib.sha256).digest()


def checksum(objects: Mapping[Reference, Object | None], key: bytes) -> str:
    """One keyed hash over the data of the referenced objects (a missing one counts too).

    Only the hash leaves this function: Secret values never reach the status,
    and without ``key`` the hash cannot be checked against guessed values.
    """
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for (kind, name), live in sorted(objects.items()):
        data = None if live is None else [live.get("data"), live.get("binaryData")]
        mac.update(json.dumps([kind, name, data], sort_keys=True).encode())
        mac.update(b"\n")  # one object's JSON never runs into the next's
    return mac.hexdigest()[:32]


def revision(template: Object, config: str) -> Revision:
    body = json.dumps([template, config], sort_keys=True, separators=(",", ":"))
    return Revision(hashlib.sha256(body.encode()).hexdigest()[:10], template, config)
