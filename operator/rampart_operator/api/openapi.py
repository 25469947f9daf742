"""pydantic's JSON Schema → a Kubernetes structural schema (the OpenAPI v3.0 subset a CRD takes).

Two uses, one converter. The API's own models (``server_defaults=True``) keep
their defaults as ``default``, so the API server fills them in and what is
stored is what the operator reads; an optional field is simply absent, never
null. The sidecar's settings (``server_defaults=False``) are defaulted by the
sidecar itself: their defaults go into the description, and ``null`` is a
value (``perTryTimeout: null``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rampart_common.durations import format_duration

__all__ = ["Schema", "cel_rules", "structural"]

Schema = dict[str, Any]
# Marked subtrees that are already structural (the sidecar's block), by name.
Splice = Callable[[str], Schema]

_DROPPED = ("title", "additionalProperties", "$defs", "default", "x-rampart-duration")


def structural(raw: Schema, *, server_defaults: bool, splice: Splice | None = None) -> Schema:
    """``raw``, a model's ``model_json_schema(by_alias=True)``, in the CRD's form."""
    return _Converter(raw.get("$defs", {}), server_defaults, splice).node(raw)


class _Converter:
    def __init__(self, defs: dict[str, Schema], server_defaults: bool, splice: Splice | None):
        self.defs = defs
        self.server_defaults = server_defaults
        self.splice = splice

    def node(self, node: Schema) -> Schema:
        node, nullable = self._resolve(node)
        if "x-rampart-structural" in node:
            assert self.splice is not None, "a spliced subtree needs its source"
            return self.splice(node["x-rampart-structural"])
        out: Schema = {}
        for key, value in node.items():
            if key in _DROPPED:
                continue
            if key in ("exclusiveMinimum", "gt"):
                out["minimum"] = value
                out["exclusiveMinimum"] = True
            elif key == "ge":  # a constraint pydantic leaves as written on a custom type
                out["minimum"] = value
            elif key == "properties":
                out["properties"] = {name: self.node(child) for name, child in value.items()}
            elif key == "items":
                out["items"] = self.node(value)
            elif key == "description":
                out["description"] = " ".join(value.split())
            else:
                out[key] = value
        self._object(node, out)
        if nullable and not self.server_defaults:
            out["nullable"] = True
        self._default(node, out)
        return out

    def _resolve(self, node: Schema) -> tuple[Schema, bool]:
        """An optional field's ``anyOf [X, null]`` as X, and a ``$ref`` as its target,
        with the field's own keys (description, default) over the target's."""
        nullable = False
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) == 1:
                nullable = len(options) < len(node["anyOf"])
                node = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
        if "$ref" in node:
            target = self.defs[node["$ref"].rsplit("/", 1)[1]]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node, nullable

    def _object(self, node: Schema, out: Schema) -> None:
        """A map keeps its value type; a free-form object (``dict[str, Any]``, or a model
        that allows extra fields) is kept by the API server as written."""
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            out["additionalProperties"] = self.node(extra)
        elif extra is True and self.server_defaults:
            out["x-kubernetes-preserve-unknown-fields"] = True

    def _default(self, node: Schema, out: Schema) -> None:
        if "default" not in node or (
            node["default"] in (None, [], {}) and not self.server_defaults
        ):
            return
        default = node["default"]
        if node.get("x-rampart-duration") and isinstance(default, int | float):
            default = format_duration(default)
        if self.server_defaults:
            if default is not None:
                out["default"] = default
            return
        out["description"] = (out.get("description", "") + f" Default: {default}.").strip()


def cel_rules(schema: Schema) -> list[dict[str, str]]:
    """Every ``x-kubernetes-validations`` rule in a structural schema, outermost first."""
    found = list(schema.get("x-kubernetes-validations", []))
    for child in schema.get("properties", {}).values():
        found += cel_rules(child)
    if "items" in schema:
        found += cel_rules(schema["items"])
    return found
