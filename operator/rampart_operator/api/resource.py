"""The HardenedService resource: its models parsed at the edge, and its schema for the CRD."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic import Field

from .fields import ApiModel, Object
from .openapi import Schema, structural
from .sidecar import sidecar_schema
from .spec import HardenedServiceSpec
from .status import HardenedServiceStatus

__all__ = ["HardenedService", "openapi_v3_schema", "parse_spec"]


class HardenedService(ApiModel):
    """A hardened HTTP service."""

    api_version: str | None = None
    kind: str | None = None
    metadata: Object | None = Field(None, json_schema_extra={"x-rampart-structural": "object"})
    spec: HardenedServiceSpec
    status: HardenedServiceStatus | None = None


def _splice(name: str) -> Schema:
    return sidecar_schema() if name == "sidecar" else {"type": "object"}


@cache
def _schema() -> Schema:
    raw = HardenedService.model_json_schema(by_alias=True)
    return structural(raw, server_defaults=True, splice=_splice)


def openapi_v3_schema() -> Schema:
    """The CRD's ``openAPIV3Schema``, generated from the models (a fresh copy)."""
    return copy.deepcopy(_schema())


def parse_spec(resource: dict[str, Any]) -> HardenedServiceSpec:
    """``resource["spec"]`` parsed and defaulted; raises pydantic's ValidationError."""
    return HardenedServiceSpec.model_validate(resource.get("spec") or {})
