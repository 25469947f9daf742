"""The building blocks every part of the HardenedService API shares.

``ApiModel`` is the base of each model: camelCase names in the API, unknown
fields refused, immutable, and each field's docstring its description in the
CRD and in docs/api.md. ``Rule`` is a rule across fields, written once: its
CEL goes into the CRD (the API server enforces it), its message and field are
what ``rampart-operator validate`` and the admission webhook report offline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from rampart_common.durations import DURATION_PATTERN

__all__ = [
    "ApiModel",
    "DurationText",
    "IntOrPercent",
    "Labels",
    "Object",
    "Rule",
    "SecretKeyRef",
    "model_problems",
    "rules",
]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


@dataclass(frozen=True)
class Rule:
    """A rule across fields: ``cel`` for the API server, ``message`` for both.

    ``field`` is where the problem is reported, relative to the model that
    holds the rule (``.image``), or empty for the model itself.
    """

    cel: str
    message: str
    field: str = ""

    def schema(self) -> dict[str, str]:
        rule = {"rule": self.cel, "message": self.message}
        if self.field:
            rule["fieldPath"] = self.field
        return rule

    def problem(self, path: str) -> tuple[str, str]:
        return (path + self.field, self.message)


def model_problems(error: ValidationError, root: str) -> list[tuple[str, str]]:
    """pydantic's errors as (field path, reason), the path in the API's names."""
    return [
        (".".join([root, *(str(part) for part in item["loc"])]), _reason(item["msg"]))
        for item in error.errors()
    ]


def _reason(message: str) -> str:
    return message.removeprefix("Value error, ")


def rules(*listed: Rule) -> dict[str, Any]:
    """A model's ``json_schema_extra``: its rules, as the CRD writes them."""
    return {"x-kubernetes-validations": [rule.schema() for rule in listed]}


# Kubernetes objects the API embeds unchanged (a PodTemplateSpec, resources, a
# NetworkPolicy peer): typed by Kubernetes' own schema, passed through whole, and
# kept as written by the API server (x-kubernetes-preserve-unknown-fields).
Object = dict[str, Any]

Labels = dict[str, str]

DurationText = Annotated[str, Field(pattern=DURATION_PATTERN)]
"""A duration as written (``5m``, ``1h30m``): rendered into PromQL and the
sidecar's file unchanged, read in seconds with ``parse_duration``."""

_PERCENT = re.compile(r"[0-9]+%")


def _count_or_percent(value: int | str) -> int | str:
    if isinstance(value, bool):
        raise ValueError("a count or a percentage, not true or false")
    if isinstance(value, int) and value < 0:
        raise ValueError("must be 0 or more")
    if isinstance(value, str) and not _PERCENT.fullmatch(value):
        raise ValueError("a percentage is a whole number and %, e.g. 25%")
    return value


# A structural schema allows exactly this anyOf on an int-or-string, with no
# constraint inside it. minimum applies only to integers and pattern only to
# strings, so beside it they say "a count >= 0, or a percentage".
IntOrPercent = Annotated[
    int | str,
    AfterValidator(_count_or_percent),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 0,
            "pattern": r"^[0-9]+%$",
        }
    ),
]


class SecretKeyRef(ApiModel):
    """A key of a Secret in the HardenedService's namespace."""

    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)
