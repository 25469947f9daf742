"""Weights through ingress-nginx's canary annotations.

The user keeps their Ingress (pointing at the HardenedService's Service);
the operator adds a second one, ``<name>-canary``, with the same hosts and
paths routed to the canary Service and ``nginx.ingress.kubernetes.io/canary-weight``
set to the weight, which ingress-nginx honours to the percent.
"""

from __future__ import annotations

import copy
from typing import Any

from ...api.spec import HardenedServiceSpec
from ..names import child_metadata
from .base import Manifest, Reference, WeighingRouter, canary_service

__all__ = ["IngressNginxRouter"]

API = "networking.k8s.io/v1"
ANNOTATION = "nginx.ingress.kubernetes.io/"


class IngressNginxRouter(WeighingRouter):
    def reads(self, spec: HardenedServiceSpec) -> list[Reference]:
        ingress = spec.canary.traffic.ingress_nginx if spec.canary else None
        if ingress is None:  # validation refuses this router without its settings
            raise ValueError("router ingressNginx needs spec.canary.traffic.ingressNginx")
        return [(API, "Ingress", ingress.ingress)]

    def manifests(
        self,
        owner: Manifest,
        spec: HardenedServiceSpec,
        weight: int,
        live: dict[Reference, Manifest | None],
    ) -> list[Manifest]:
        name = owner["metadata"]["name"]
        primary = live.get(self.reads(spec)[0])
        if primary is None:
            return [canary_service(owner, spec)]
        rules = copy.deepcopy(primary.get("spec", {}).get("rules") or [])
        for rule in rules:
            for path in (rule.get("http") or {}).get("paths") or []:
                backend = path.get("backend", {}).get("service") or {}
                if backend.get("name") == name:
                    backend["name"] = f"{name}-canary"
        ingress_spec: dict[str, Any] = {"rules": rules}
        if primary.get("spec", {}).get("ingressClassName"):
            ingress_spec["ingressClassName"] = primary["spec"]["ingressClassName"]
        metadata = child_metadata(owner, f"{name}-canary", "route")
        metadata["annotations"] = {
            ANNOTATION + "canary": "true",
            ANNOTATION + "canary-weight": str(weight),
        }
        return [
            canary_service(owner, spec),
            {"apiVersion": API, "kind": "Ingress", "metadata": metadata, "spec": ingress_spec},
        ]

    def problems(
        self, owner: Manifest, spec: HardenedServiceSpec, live: dict[Reference, Manifest | None]
    ) -> list[tuple[str, str]]:
        ref = self.reads(spec)[0]
        field = "spec.canary.traffic.ingressNginx.ingress"
        primary = live.get(ref)
        if primary is None:
            return [(field, f"Ingress {ref[2]} not found")]
        name = owner["metadata"]["name"]
        backends = [
            (path.get("backend", {}).get("service") or {}).get("name")
            for rule in primary.get("spec", {}).get("rules") or []
            for path in (rule.get("http") or {}).get("paths") or []
        ]
        if name not in backends:
            return [(field, f"Ingress {ref[2]} sends nothing to Service {name}")]
        return []
