"""``spec.sidecar``'s schema, generated from the sidecar's own settings model.

So the CRD, the sidecar's file and its validation errors cannot drift apart.
Three file fields are the operator's to fill in and are replaced in the API:

  upstream.url          always http://127.0.0.1:<spec.port>
  cache.redis.url       cache.redis.urlSecretRef (a Secret key; never inline)
  cache.adminTokenFile  cache.adminTokenSecretRef
"""

from __future__ import annotations

import copy
from functools import cache

from rampart_common.sidecar_settings import SidecarSettings

from .fields import SecretKeyRef
from .openapi import Schema, structural

__all__ = ["sidecar_schema"]


def _secret_key_ref() -> Schema:
    return structural(SecretKeyRef.model_json_schema(by_alias=True), server_defaults=True)


@cache
def _schema() -> Schema:
    schema = structural(SidecarSettings.model_json_schema(by_alias=True), server_defaults=False)
    properties = schema["properties"]
    del properties["upstream"]["properties"]["url"]
    cache = properties["cache"]
    cache["description"] = "The response cache; absent means off. `cache: {}` turns it on."
    del cache["properties"]["adminTokenFile"]
    cache["properties"]["adminTokenSecretRef"] = _secret_key_ref()
    redis = cache["properties"]["redis"]
    del redis["properties"]["url"]
    redis["properties"]["urlSecretRef"] = _secret_key_ref()
    schema["description"] = (
        "The sidecar's settings: the keys of its settings file (docs/sidecar.md), "
        "less the fields the operator fills in."
    )
    return schema


def sidecar_schema() -> Schema:
    """A fresh copy each time: callers may edit what they get."""
    return copy.deepcopy(_schema())
