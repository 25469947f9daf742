"""The CRD's schema put to work offline: validation, as the API server would.

Validation is stricter than a server that prunes unknown fields: an unknown
field is reported (as ``kubectl apply --validate=strict`` does), because a
typo in a resilience setting should not silently fall back to a default.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema

from rampart_common.durations import parse_duration

from .crd import crd

__all__ = ["openapi_schema", "schema_problems", "to_json_schema"]

Schema = dict[str, Any]


@cache
def openapi_schema() -> Schema:
    schema: Schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def to_json_schema(node: Schema) -> Schema:
    """OpenAPI v3.0 structural schema → JSON Schema draft 2020-12."""
    out: Schema = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_json_schema(child) for name, child in value.items()}
        elif key == "items":
            out[key] = to_json_schema(value)
        elif key == "anyOf":
            out[key] = [to_json_schema(option) for option in value]
        elif key in (
            "nullable",
            "x-kubernetes-validations",
            "exclusiveMinimum",
            "format",
            "x-kubernetes-list-type",
            "x-kubernetes-list-map-keys",
        ):
            continue
        else:
            out[key] = value
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = to_json_schema(openapi_schema())
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"].pop("status", None)
    schema["additionalProperties"] = True  # status and the rest are the server's
    return jsonschema.Draft202012Validator(schema)


def schema_problems(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """Every schema violation as (field path, reason), in a stable order."""
    problems = []
    for error in _validator().iter_errors(resource):
        path = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})), key=str)
            for name in extra:
                field = f"{path}.{name}" if path != "(top level)" else str(name)
                problems.append((field, _unknown(name)))
            continue
        problems.append((path, _reason(error)))
    return sorted(problems)


def _unknown(name: Any) -> str:
    if str(name).lower() in ("true", "false"):
        # kubectl and PyYAML read YAML 1.1, where an unquoted on/off/yes/no is a boolean.
        return (
            "unknown field (an unquoted on, off, yes or no key is read as true or false: quote it)"
        )
    return "unknown field"


def _reason(error: jsonschema.ValidationError) -> str:
    """The reason in the sidecar's words where the sidecar has some (a duration)."""
    if error.validator == "pattern" and "(ms|s|m|h|d)" in str(error.validator_value):
        try:
            parse_duration(str(error.instance))
        except ValueError as bad:
            return str(bad)
    return str(error.message)
