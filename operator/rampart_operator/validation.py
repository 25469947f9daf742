"""Every problem with a HardenedService, each with its field path.

The same checks serve ``rampart-operator validate``, the reconciler (which
refuses to touch children while any problem stands) and the admission webhook.
Schema violations come first (the CRD's schema, generated from the API's
models); then the rules across fields, each defined once in the models with
its CEL twin in the CRD (``HardenedServiceSpec.problems``, so they hold
offline too); then those that need the operator's own names, the sidecar's
settings model or a schedule's meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from rampart_common.errors import ConfigError
from rampart_common.sidecar_settings import parse_host_port, settings_from_mapping

from .analysis.queries import BUILT_IN_CHECKS
from .api import HardenedServiceSpec, parse_spec
from .api.fields import Object, model_problems
from .podsecurity import pod_security_problems
from .render.alerts import OWN_LABELS
from .render.cron import longest_gap
from .render.sidecar import SIDECAR_NAME, sidecar_file
from .schema import schema_problems
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


def validate(resource: Object, limits: Limits | None = None) -> list[Problem]:
    """Every problem with the resource, each with its field; ``limits`` are the operator's
    settings (without them, the strictest Pod Security level and no allowlists)."""
    problems = [Problem(path, message) for path, message in schema_problems(resource)]
    if problems:
        return problems  # later rules assume the shape is right
    limits = limits or Limits()
    try:
        spec = parse_spec(resource)
    except ValidationError as error:  # what JSON Schema cannot say (a percentage's form)
        return sorted(Problem(*problem) for problem in model_problems(error, "spec"))
    problems = [Problem(*problem) for problem in spec.problems()] + _spec_problems(spec)
    if limits.analysis_urls:
        problems += _analysis_endpoint_problems(spec, limits.analysis_urls)
    for template, path in (
        (spec.template, "spec.template"),
        (spec.canary.template if spec.canary else None, "spec.canary.template"),
    ):
        if template is not None:
            problems += _pod_problems(template, path, limits)
    return sorted(problems)


def _pod_problems(template: Object, path: str, limits: Limits) -> list[Problem]:
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


def _analysis_endpoint_problems(
    spec: HardenedServiceSpec, allowed: tuple[str, ...]
) -> list[Problem]:
    """#22: the operator fetches the analysis URL from inside the cluster, so a resource
    may name only an endpoint an administrator allowed."""
    prometheus = spec.canary.analysis.prometheus if spec.canary else None
    url = prometheus.url.rstrip("/") if prometheus else ""
    if not url or url in allowed:
        return []
    return [
        Problem(
            "spec.canary.analysis.prometheus.url",
            "not an analysis endpoint this operator allows (RAMPART_ANALYSIS_URLS, the "
            f"chart's analysis.allowedUrls): {', '.join(allowed)}",
        )
    ]


def _spec_problems(spec: HardenedServiceSpec) -> list[Problem]:
    """The rules that need more than the API's models: the operator's own names, the
    sidecar's settings model, a schedule's meaning."""
    problems = _template_problems(spec.template, "spec.template")
    if spec.canary:
        problems += _template_problems(spec.canary.template, "spec.canary.template")
        names = [metric.name for metric in spec.canary.analysis.metrics or []]
        for index, name in enumerate(names):
            if name in BUILT_IN_CHECKS or names.index(name) != index:
                problems.append(
                    Problem(f"spec.canary.analysis.metrics.{index}.name", f"{name} is taken")
                )
    for label in (spec.alerts.labels if spec.alerts else None) or {}:
        if label in OWN_LABELS:
            problems.append(
                Problem(
                    f"spec.alerts.labels.{label}",
                    "set by the operator on every alert (routing and the automatic rollback "
                    "match on it)",
                )
            )
    drill = spec.backup.drill if spec.backup else None
    if drill is not None:
        try:
            longest_gap(drill.schedule)  # the drill-missing alert's limit needs it
        except ValueError as error:
            problems.append(Problem("spec.backup.drill.schedule", f"not a schedule: {error}"))
    return problems + _sidecar_problems(spec)


def _sidecar_problems(spec: HardenedServiceSpec) -> list[Problem]:
    problems: list[Problem] = []
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
        if port == spec.port:
            problems.append(
                Problem("spec.port", f"{port} is also the sidecar's port ({path}); pick another")
            )
    return problems


def _template_problems(template: Object | None, path: str) -> list[Problem]:
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
