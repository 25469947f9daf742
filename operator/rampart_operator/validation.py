"""Every problem with a HardenedService, each with its field path.

The same checks serve ``rampart-operator validate``, the reconciler (which
refuses to touch children while any problem stands) and the admission webhook.
Schema violations come first; then the rules the schema cannot express: the
CRD's CEL rules again (so they hold offline too), and those that need the
sidecar's own settings model or several fields at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rampart_common.errors import ConfigError
from rampart_common.sidecar_settings import parse_host_port, settings_from_mapping

from .analysis.queries import BUILT_IN_CHECKS
from .podsecurity import pod_security_problems
from .render.alerts import OWN_LABELS
from .render.cron import longest_gap
from .render.sidecar import SIDECAR_NAME, sidecar_file
from .schema import apply_defaults, schema_problems
from .settings import OperatorSettings

__all__ = ["Problem", "validate"]


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Limits:
    """What the operator's administrator allows (its settings), beyond the API's own rules.

    ``analysis_urls``: the Prometheus an analysis may query (empty: any);
    ``pod_security``: the Pod Security level every template must meet once
    hardened; ``service_accounts``: the ``serviceAccountName``s a template may
    use (empty: any).
    """

    analysis_urls: tuple[str, ...] = ()
    pod_security: str = "restricted"
    service_accounts: tuple[str, ...] = ()


def limits_of(settings: OperatorSettings) -> Limits:
    return Limits(settings.analysis_urls, settings.pod_security, settings.service_accounts)


def validate(resource: dict[str, Any], limits: Limits | None = None) -> list[Problem]:
    """Every problem with the resource, each with its field; ``limits`` are the operator's
    settings (without them, the strictest Pod Security level and no allowlists)."""
    problems = [Problem(path, message) for path, message in schema_problems(resource)]
    if problems:
        return problems  # later rules assume the shape is right
    limits = limits or Limits()
    spec = apply_defaults(resource)["spec"]
    problems = _spec_problems(spec)
    if limits.analysis_urls:
        problems += _analysis_endpoint_problems(spec, limits.analysis_urls)
    for template, path in (
        (spec.get("template"), "spec.template"),
        ((spec.get("canary") or {}).get("template"), "spec.canary.template"),
    ):
        if isinstance(template, dict):
            problems += _pod_problems(template, path, limits)
    return sorted(problems)


def _pod_problems(template: dict[str, Any], path: str, limits: Limits) -> list[Problem]:
    problems = [
        Problem(field, f"{message} (Pod Security {limits.pod_security!r}, the operator's setting)")
        for field, message in pod_security_problems(template, path, limits.pod_security)
    ]
    account = (template.get("spec") or {}).get("serviceAccountName")
    if account and limits.service_accounts and account not in limits.service_accounts:
        problems.append(
            Problem(
                f"{path}.spec.serviceAccountName",
                f"{account} is not a service account this operator allows "
                f"(RAMPART_SERVICE_ACCOUNTS): {', '.join(limits.service_accounts)}",
            )
        )
    return problems


def _analysis_endpoint_problems(spec: dict[str, Any], allowed: tuple[str, ...]) -> list[Problem]:
    """#22: the operator fetches the analysis URL from inside the cluster, so a resource
    may name only an endpoint an administrator allowed."""
    prometheus = ((spec.get("canary") or {}).get("analysis") or {}).get("prometheus") or {}
    url = str(prometheus.get("url", "")).rstrip("/")
    if not url or url in allowed:
        return []
    return [
        Problem(
            "spec.canary.analysis.prometheus.url",
            "not an analysis endpoint this operator allows (RAMPART_ANALYSIS_URLS, the "
            f"chart's analysis.allowedUrls): {', '.join(allowed)}",
        )
    ]


def _spec_problems(spec: dict[str, Any]) -> list[Problem]:  # noqa: C901 - one check per field, each independent
    problems: list[Problem] = []
    if ("image" in spec) == ("template" in spec):
        problems.append(Problem("spec.image", "set spec.image or spec.template, exactly one"))
    pdb = spec.get("podDisruptionBudget") or {}
    if "maxUnavailable" in pdb and "minAvailable" in pdb:
        problems.append(
            Problem("spec.podDisruptionBudget", "set maxUnavailable or minAvailable, not both")
        )
    problems.extend(_template_problems(spec.get("template"), "spec.template"))
    if spec.get("canary"):
        problems.extend(_canary_problems(spec["canary"]))
    for label in (spec.get("alerts") or {}).get("labels") or {}:
        if label in OWN_LABELS:
            problems.append(
                Problem(
                    f"spec.alerts.labels.{label}",
                    "set by the operator on every alert (routing and the automatic rollback "
                    "match on it)",
                )
            )
    backup = spec.get("backup")
    if backup:
        names = [source["name"] for source in backup["sources"]]
        for index, source in enumerate(backup["sources"]):
            kinds = [k for k in ("postgres", "redis", "path") if k in source]
            if len(kinds) != 1:
                problems.append(
                    Problem(
                        f"spec.backup.sources.{index}", "set exactly one of postgres, redis, path"
                    )
                )
            if names.count(source["name"]) > 1:
                problems.append(
                    Problem(f"spec.backup.sources.{index}.name", f"{source['name']} appears twice")
                )
        drill = backup.get("drill") or {}
        if drill.get("schedule"):
            try:
                longest_gap(drill["schedule"])  # the drill-missing alert's limit needs it
            except ValueError as error:
                problems.append(Problem("spec.backup.drill.schedule", f"not a schedule: {error}"))
    try:
        settings = settings_from_mapping(sidecar_file(spec))
    except ConfigError as error:
        for line in error.problems:
            field, _, message = line.partition(":")
            # A rule across fields (listen and admin) is the whole block's.
            where = "spec.sidecar" if field == "(top level)" else f"spec.sidecar.{field}"
            problems.append(Problem(where, message.strip()))
        return problems
    sidecar_ports = {
        "spec.sidecar.listen": parse_host_port(settings.listen)[1],
        "spec.sidecar.admin": parse_host_port(settings.admin)[1],
    }
    for path, port in sidecar_ports.items():
        if port == spec["port"]:
            problems.append(
                Problem("spec.port", f"{port} is also the sidecar's port ({path}); pick another")
            )
    return problems


def _template_problems(template: Any, path: str) -> list[Problem]:
    if template is None:
        return []
    containers = (template.get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        return [Problem(f"{path}.spec.containers", "the template needs at least one container")]
    return [
        Problem(f"{path}.spec.containers.{index}.name", f"{SIDECAR_NAME} is the sidecar's name")
        for index, container in enumerate(containers)
        if isinstance(container, dict) and container.get("name") == SIDECAR_NAME
    ]


def _canary_problems(canary: dict[str, Any]) -> list[Problem]:
    problems = _template_problems(canary.get("template"), "spec.canary.template")
    if "image" in canary and "template" in canary:
        problems.append(
            Problem("spec.canary.image", "set canary.image or canary.template, not both")
        )
    analysis = canary.get("analysis") or {}
    if "prometheus" not in analysis:
        for field in ("thresholds", "metrics"):
            if field in analysis:
                problems.append(
                    Problem(
                        f"spec.canary.analysis.{field}", "needs spec.canary.analysis.prometheus"
                    )
                )
    for index, metric in enumerate(analysis.get("metrics") or []):
        if "max" not in metric and "min" not in metric:
            problems.append(
                Problem(f"spec.canary.analysis.metrics.{index}", "set max, min or both")
            )
    names = [m["name"] for m in analysis.get("metrics") or []]
    for index, name in enumerate(names):
        if name in BUILT_IN_CHECKS or names.index(name) != index:
            problems.append(
                Problem(f"spec.canary.analysis.metrics.{index}.name", f"{name} is taken")
            )
    traffic = canary.get("traffic") or {}
    router = traffic.get("router", "replicas")
    if router != "replicas" and router not in traffic:
        problems.append(
            Problem(f"spec.canary.traffic.{router}", f"router {router} needs its settings here")
        )
    return problems
