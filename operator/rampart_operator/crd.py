"""The HardenedService CustomResourceDefinition.

Its ``openAPIV3Schema``, descriptions, defaults and CEL rules included, is
generated from the API's models (``api/``); ``spec.sidecar`` from the sidecar's
own settings model. ``crds/hardenedservice.yaml`` is this module's output
(``rampart-operator crd``); a test fails when the two differ.
"""

from __future__ import annotations

from typing import Any

from .api import openapi_v3_schema

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "crd"]

GROUP = "rampart.dev"
VERSION = "v1alpha1"
KIND = "HardenedService"
PLURAL = "hardenedservices"


def crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "rampart"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": "hardenedservice",
                "listKind": f"{KIND}List",
                "shortNames": ["hsvc"],
                "categories": ["rampart"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Weight", "type": "integer", "jsonPath": ".status.canary.weight"},
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": openapi_v3_schema()},
                }
            ],
        },
    }
