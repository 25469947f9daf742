"""The HardenedService CustomResourceDefinition, built in one place.

``spec.sidecar`` is generated from the sidecar's own settings model, so the
CRD, the sidecar's file and its validation errors cannot drift apart. Three
file fields are the operator's to fill in and are replaced in the API:

  upstream.url          always http://127.0.0.1:<spec.port>
  cache.redis.url       cache.redis.urlSecretRef (a Secret key; never inline)
  cache.adminTokenFile  cache.adminTokenSecretRef

``crds/hardenedservice.yaml`` is this module's output (``rampart-operator crd``);
a test fails when the two differ.
"""

from __future__ import annotations

import copy
from typing import Any

from rampart_common.durations import format_duration
from rampart_common.sidecar_settings import SidecarSettings

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION", "crd", "sidecar_schema"]

GROUP = "rampart.dev"
VERSION = "v1alpha1"
KIND = "HardenedService"
PLURAL = "hardenedservices"

Schema = dict[str, Any]

SECRET_KEY_REF: Schema = {
    "type": "object",
    "description": "A key of a Secret in the HardenedService's namespace.",
    "required": ["name", "key"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "key": {"type": "string", "minLength": 1, "maxLength": 253},
    },
}
# A structural schema allows exactly this anyOf on an int-or-string, with no
# constraint inside it. minimum applies only to integers and pattern only to
# strings, so beside it they say "a count >= 0, or a percentage".
INT_OR_STRING: Schema = {
    "x-kubernetes-int-or-string": True,
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "minimum": 0,
    "pattern": r"^[0-9]+%$",
}


def _structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """pydantic's JSON Schema → a Kubernetes structural schema (OpenAPI v3.0 subset)."""
    nullable = False
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            nullable = len(options) < len(node["anyOf"])
            node = {**options[0], **{k: v for k, v in node.items() if k != "anyOf"}}
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if nullable:
        node = {**node, "nullable": True}
    out: Schema = {}
    for key, value in node.items():
        if key in ("title", "additionalProperties", "$defs", "default", "x-rampart-duration"):
            continue
        if key in ("exclusiveMinimum", "gt"):
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "ge":  # a constraint pydantic leaves as written on a custom type
            out["minimum"] = value
        elif key == "properties":
            out["properties"] = {name: _structural(child, defs) for name, child in value.items()}
        elif key == "items":
            out["items"] = _structural(value, defs)
        else:
            out[key] = value
    if "default" in node and node["default"] not in (None, [], {}):
        default = node["default"]
        if node.get("x-rampart-duration") and isinstance(default, int | float):
            default = format_duration(default)
        out["description"] = (out.get("description", "") + f" Default: {default}.").strip()
    return out


def sidecar_schema() -> Schema:
    raw = SidecarSettings.model_json_schema(by_alias=True)
    schema = _structural(raw, raw.get("$defs", {}))
    properties = schema["properties"]
    del properties["upstream"]["properties"]["url"]
    cache = properties["cache"]
    cache["description"] = "The response cache; absent means off. `cache: {}` turns it on."
    del cache["properties"]["adminTokenFile"]
    cache["properties"]["adminTokenSecretRef"] = copy.deepcopy(SECRET_KEY_REF)
    redis = cache["properties"]["redis"]
    del redis["properties"]["url"]
    redis["properties"]["urlSecretRef"] = copy.deepcopy(SECRET_KEY_REF)
    schema["description"] = (
        "The sidecar's settings: the keys of its settings file (docs/sidecar.md), "
        "less the fields the operator fills in."
    )
    return schema


def _condition() -> Schema:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }


def _spec() -> Schema:
    return {
        "type": "object",
        "description": "The desired hardened workload.",
        "x-kubernetes-validations": [
            {
                "rule": "has(self.image) || has(self.template)",
                "message": "set spec.image or spec.template",
                "fieldPath": ".image",
            },
            {
                "rule": "!(has(self.image) && has(self.template))",
                "message": "set spec.image or spec.template, not both",
                "fieldPath": ".image",
            },
        ],
        "properties": {
            "image": {
                "type": "string",
                "minLength": 1,
                "description": "Shortcut for a template with one container of this image.",
            },
            "template": {
                "type": "object",
                "description": "The application's PodTemplateSpec; the sidecar is added to it.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "replicas": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 2},
            "port": {
                "type": "integer",
                "minimum": 1,
                "maximum": 65535,
                "default": 8080,
                "description": "The application's port; the sidecar listens in front of it.",
            },
            "service": {
                "type": "object",
                "default": {},
                "properties": {
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 80},
                    "type": {
                        "type": "string",
                        "enum": ["ClusterIP", "NodePort", "LoadBalancer"],
                        "default": "ClusterIP",
                    },
                },
            },
            "podDisruptionBudget": {
                "type": "object",
                "description": "Default: maxUnavailable 1.",
                "x-kubernetes-validations": [
                    {
                        "rule": "!(has(self.maxUnavailable) && has(self.minAvailable))",
                        "message": "set maxUnavailable or minAvailable, not both",
                    }
                ],
                "properties": {
                    "enabled": {"type": "boolean", "default": True},
                    "maxUnavailable": copy.deepcopy(INT_OR_STRING),
                    "minAvailable": copy.deepcopy(INT_OR_STRING),
                },
            },
            "networkPolicy": {
                "type": "object",
                "description": "On by default: only `from` peers (default: any) reach "
                "the sidecar's port, only `metricsFrom` peers (default: the operator's "
                "monitoring namespace) its admin port, and nobody the application's own port.",
                "properties": {
                    "enabled": {"type": "boolean", "default": True},
                    "from": {
                        "type": "array",
                        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                    "metricsFrom": {
                        "type": "array",
                        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    },
                },
            },
            "sidecarResources": {
                "type": "object",
                "description": "The sidecar container's ResourceRequirements.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "sidecar": sidecar_schema(),
            "alerts": _alerts(),
            "monitoring": _monitoring(),
            "backup": _backup(),
            "canary": _canary(),
        },
    }


def _backup() -> Schema:
    keep = {"type": "integer", "minimum": 0, "maximum": 1000}
    return {
        "type": "object",
        "description": "Scheduled, encrypted backups: one CronJob per source (docs/backups.md).",
        "required": ["schedule", "sources", "destination", "encryption"],
        "properties": {
            "schedule": {"type": "string", "minLength": 9, "description": "Cron schedule."},
            "timeZone": {"type": "string"},
            "suspend": {"type": "boolean", "default": False},
            "sources": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "x-kubernetes-validations": [
                        {
                            "rule": "[has(self.postgres), has(self.redis), has(self.path)]"
                            ".filter(x, x).size() == 1",
                            "message": "set exactly one of postgres, redis, path",
                        }
                    ],
                    "properties": {
                        "name": {
                            "type": "string",
                            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                            "maxLength": 20,
                        },
                        "postgres": {
                            "type": "object",
                            "required": ["urlSecretRef"],
                            "properties": {"urlSecretRef": copy.deepcopy(SECRET_KEY_REF)},
                        },
                        "redis": {
                            "type": "object",
                            "required": ["urlSecretRef"],
                            "properties": {"urlSecretRef": copy.deepcopy(SECRET_KEY_REF)},
                        },
                        "path": {
                            "type": "object",
                            "required": ["claimName"],
                            "properties": {
                                "claimName": {"type": "string", "minLength": 1},
                                "path": {"type": "string", "default": "/"},
                            },
                        },
                    },
                },
            },
            "destination": {
                "type": "object",
                "required": ["pvc"],
                "properties": {"pvc": {"type": "string", "minLength": 1}},
            },
            "retention": {
                "type": "object",
                "properties": {
                    "keepLast": keep,
                    "keepDaily": keep,
                    "keepWeekly": keep,
                    "keepMonthly": keep,
                },
            },
            "encryption": {
                "type": "object",
                "required": ["keySecretRef"],
                "properties": {"keySecretRef": copy.deepcopy(SECRET_KEY_REF)},
            },
            "resources": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "pushgateway": {
                "type": "string",
                "description": "Pushgateway URL for the run's metrics.",
            },
            "drill": _drill(),
        },
    }


def _drill() -> Schema:
    return {
        "type": "object",
        "description": "Restore drills: on this schedule, one Job per source restores the "
        "newest backup into a throwaway server in its own pod, checks it and records the "
        "restore's duration (RTO) and the backup's age (RPO) (docs/backups.md#restore-drills).",
        "required": ["schedule"],
        "properties": {
            "schedule": {"type": "string", "minLength": 9, "description": "Cron schedule."},
            "suspend": {"type": "boolean", "default": False},
            "rto": {
                **DURATION,
                "description": "Recovery time objective: RampartRestoreDrillRTOExceeded fires "
                "when a drill's restore takes longer.",
            },
            "rpo": {
                **DURATION,
                "description": "Recovery point objective: RampartRestoreDrillRPOExceeded fires "
                "when the newest backup a drill restored was older than this.",
            },
            "checks": {
                "type": "object",
                "description": "Beyond the built-in check (the restore is not empty).",
                "properties": {
                    "sql": {
                        "type": "array",
                        "maxItems": 20,
                        "items": {"type": "string", "minLength": 1, "maxLength": 4096},
                        "description": "SQL run on a restored PostgreSQL source; each must "
                        "succeed, and one that returns false or 0 fails the drill.",
                    },
                    "commands": {
                        "type": "array",
                        "maxItems": 20,
                        "items": {"type": "string", "minLength": 1, "maxLength": 4096},
                        "description": "Shell commands run in the drill's container with "
                        "RAMPART_DRILL_TARGET set to the restored copy; each must exit 0.",
                    },
                },
            },
            "images": {
                "type": "object",
                "description": "The throwaway servers' images: the same major version as "
                "production (a drill refuses another). Default: postgres:16-alpine, "
                "redis:7-alpine.",
                "properties": {
                    "postgres": {"type": "string", "minLength": 1},
                    "redis": {"type": "string", "minLength": 1},
                },
            },
        },
    }


DURATION: Schema = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"}
LABELS: Schema = {"type": "object", "additionalProperties": {"type": "string"}}


def _alerts() -> Schema:
    return {
        "type": "object",
        "description": "A PrometheusRule with threshold and SLO alerts (docs/alerts.md); "
        "absent means none.",
        "properties": {
            "enabled": {"type": "boolean", "default": True},
            "errorRate": {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 1,
                "default": 0.05,
                "description": "Share of 5xx answers over alerts.window that alerts.",
            },
            "latencyP95": {**DURATION, "default": "800ms"},
            "window": {
                **DURATION,
                "default": "5m",
                "description": "Range of the error-rate and latency alerts' rates.",
            },
            "for": {
                **DURATION,
                "description": "How long the error rate or p95 must stay over its threshold "
                "before its alert fires. Default: 5m for the error rate, 10m for the p95.",
            },
            "circuitOpenFor": {
                **DURATION,
                "default": "3m",
                "description": "How long a breaker may stay open unalerted.",
            },
            "slo": {
                "type": "object",
                "required": ["objective"],
                "properties": {
                    "objective": {
                        "type": "number",
                        "minimum": 50,
                        "maximum": 99.999,
                        "description": "Percent of requests answered without 5xx.",
                    },
                    "window": {**DURATION, "default": "30d"},
                },
            },
            "labels": {
                **LABELS,
                "description": "Copied onto the PrometheusRule (for "
                "Prometheus' ruleSelector) and onto every alert (for routing).",
            },
            "runbookBaseURL": {"type": "string"},
            "backupMaxAge": {
                **DURATION,
                "default": "26h",
                "description": "Age of the newest good backup that alerts "
                "(needs spec.backup.pushgateway).",
            },
        },
    }


def _canary() -> Schema:
    return {
        "type": "object",
        "description": "Progressive delivery: a canary Deployment promoted step by step while "
        "analysis passes, rolled back on failed analysis or a firing alert (docs/canary.md). "
        "A new rollout starts when the version the spec asks for changes: the pod template, "
        "this image or template, or a ConfigMap or Secret the pods read.",
        "required": ["steps"],
        "x-kubernetes-validations": [
            {
                "rule": "!(has(self.image) && has(self.template))",
                "message": "set canary.image or canary.template, not both",
                "fieldPath": ".image",
            }
        ],
        "properties": {
            "image": {
                "type": "string",
                "minLength": 1,
                "description": "The version to move to: spec's template with this image "
                "in its first container.",
            },
            "template": {
                "type": "object",
                "description": "The version to move to, as a whole PodTemplateSpec.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": 20,
                "description": "Traffic weights in order; after the last, the canary is promoted.",
                "items": {
                    "type": "object",
                    "required": ["weight"],
                    "properties": {
                        "weight": {"type": "integer", "minimum": 1, "maximum": 100},
                        "pause": {
                            **DURATION,
                            "description": "Time at this weight before the next step "
                            "(and at least one passing analysis). Default: 0s.",
                        },
                    },
                },
            },
            "analysis": {
                "type": "object",
                "default": {},
                "properties": {
                    "interval": {**DURATION, "default": "1m"},
                    "window": {
                        **DURATION,
                        "description": "Range of the built-in queries. Default: the interval "
                        "(at least 4 scrape intervals make a rate).",
                    },
                    "failureLimit": {"type": "integer", "minimum": 1, "default": 2},
                    "progressDeadline": {
                        **DURATION,
                        "default": "10m",
                        "description": "How long a rollout may go without a passing analysis "
                        "or a new step before it is rolled back.",
                    },
                    "minRequests": {
                        "type": "integer",
                        "minimum": 0,
                        "default": 10,
                        "description": "Fewer canary requests in the window is no data.",
                    },
                    "prometheus": {
                        "type": "object",
                        "required": ["url"],
                        "properties": {"url": {"type": "string", "pattern": "^https?://"}},
                    },
                    "thresholds": {
                        "type": "object",
                        "properties": {
                            "errorRate": {"type": "number", "minimum": 0, "maximum": 1},
                            "latencyP95": DURATION,
                        },
                    },
                    "metrics": {
                        "type": "array",
                        "maxItems": 20,
                        "description": "Own PromQL checks; {{namespace}}, {{name}}, {{window}} "
                        "are filled in. One number or an empty result (no data).",
                        "items": {
                            "type": "object",
                            "required": ["name", "query"],
                            "properties": {
                                "name": {"type": "string", "pattern": "^[a-zA-Z][a-zA-Z0-9_]*$"},
                                "query": {"type": "string", "minLength": 1},
                                "max": {"type": "number"},
                                "min": {"type": "number"},
                            },
                        },
                    },
                },
            },
            "rollbackOnAlerts": {
                "type": "boolean",
                "default": True,
                "description": "Any firing alert labelled namespace and hardenedservice for this "
                "service rolls the canary back.",
            },
            "bakeWindow": {
                **DURATION,
                "default": "5m",
                "description": "After promotion, an alert within this time rolls back to the "
                "previous revision.",
            },
            "revisionHistory": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
            "traffic": {
                "type": "object",
                "default": {},
                "properties": {
                    "router": {
                        "type": "string",
                        "enum": ["replicas", "gatewayAPI", "ingressNginx"],
                        "default": "replicas",
                    },
                    "gatewayAPI": {
                        "type": "object",
                        "required": ["parentRefs"],
                        "properties": {
                            "parentRefs": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                            "hostnames": {"type": "array", "items": {"type": "string"}},
                            "path": {"type": "string", "pattern": "^/", "default": "/"},
                        },
                    },
                    "ingressNginx": {
                        "type": "object",
                        "required": ["ingress"],
                        "properties": {"ingress": {"type": "string", "minLength": 1}},
                    },
                },
            },
        },
    }


def _monitoring() -> Schema:
    return {
        "type": "object",
        "description": "Scraping of the sidecars' admin port; with spec.alerts set and this "
        "absent, a PodMonitor is rendered.",
        "properties": {
            "podMonitor": {
                "type": "object",
                "properties": {"enabled": {"type": "boolean", "default": True}},
            },
            "serviceMonitor": {
                "type": "object",
                "properties": {"enabled": {"type": "boolean", "default": False}},
            },
            "interval": {**DURATION, "default": "30s"},
            "labels": {
                **LABELS,
                "description": "Copied onto the PodMonitor/ServiceMonitor "
                "(for Prometheus' podMonitorSelector).",
            },
        },
    }


def _status() -> Schema:
    return {
        "type": "object",
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64"},
            "appliedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The last generation whose children were all applied.",
            },
            "phase": {
                "type": "string",
                "enum": ["Healthy", "Progressing", "Degraded", "RolledBack", "Failed"],
            },
            "conditions": {
                "type": "array",
                "items": _condition(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "children": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "ready": {"type": "boolean"},
                    },
                },
            },
            "canary": {
                "type": "object",
                "description": "The rollout's state; the operator resumes from it after a restart.",
                "x-kubernetes-preserve-unknown-fields": True,
                "properties": {
                    "phase": {"type": "string"},
                    "weight": {"type": "integer"},
                    "step": {"type": "integer"},
                    "stable": {"type": "string"},
                    "revision": {"type": "string"},
                    "failedChecks": {"type": "integer"},
                    "message": {"type": "string"},
                },
            },
            "revisions": {
                "type": "array",
                "description": "Known revisions, stable first: template and config checksum.",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }


def crd() -> Schema:
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
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A hardened HTTP service.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _spec(),
                                "status": _status(),
                            },
                        }
                    },
                }
            ],
        },
    }
