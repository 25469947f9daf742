"""``spec.canary``: the version to move to, its steps, analysis and traffic router."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from rampart_common.durations import parse_duration

from .fields import ApiModel, DurationText, Object, Rule, rules

__all__ = [
    "Analysis",
    "CanarySpec",
    "GatewayApiRouter",
    "IngressNginxRouter",
    "MetricCheck",
    "PrometheusEndpoint",
    "Step",
    "Thresholds",
    "Traffic",
]

IMAGE_OR_TEMPLATE = Rule(
    "!(has(self.image) && has(self.template))",
    "set canary.image or canary.template, not both",
    ".image",
)
BOUNDED = Rule("has(self.max) || has(self.min)", "set max, min or both")
THRESHOLDS_NEED_PROMETHEUS = Rule(
    "!has(self.thresholds) || has(self.prometheus)",
    "needs spec.canary.analysis.prometheus",
    ".thresholds",
)
METRICS_NEED_PROMETHEUS = Rule(
    "!has(self.metrics) || has(self.prometheus)",
    "needs spec.canary.analysis.prometheus",
    ".metrics",
)
# has(self.router): the API server checks the rules against traffic's own default
# ({}) too, where router, defaulted only inside an object, is absent.
GATEWAY_API_SETTINGS = Rule(
    "!has(self.router) || self.router != 'gatewayAPI' || has(self.gatewayAPI)",
    "router gatewayAPI needs its settings here",
    ".gatewayAPI",
)
INGRESS_NGINX_SETTINGS = Rule(
    "!has(self.router) || self.router != 'ingressNginx' || has(self.ingressNginx)",
    "router ingressNginx needs its settings here",
    ".ingressNginx",
)


class Step(ApiModel):
    weight: int = Field(ge=1, le=100)
    """Percent of traffic to the canary at this step."""
    pause: DurationText | None = None
    """Time at this weight before the next step (and at least one passing analysis).
    Default: 0s."""

    @property
    def pause_seconds(self) -> float:
        return parse_duration(self.pause) if self.pause else 0.0


class PrometheusEndpoint(ApiModel):
    """The Prometheus the analysis queries; without it, steps advance on their
    pauses alone."""

    url: str = Field(pattern="^https?://")
    """Its base URL; the operator's administrator may limit which
    (RAMPART_ANALYSIS_URLS)."""


class Thresholds(ApiModel):
    """Limits of the built-in checks on the canary's pods."""

    error_rate: float | None = Field(None, ge=0, le=1)
    """Share of 5xx answers above which a check fails. Default: 0.01."""
    latency_p95: DurationText | None = None
    """95th percentile of request time above which a check fails; absent: not checked."""


class MetricCheck(ApiModel):
    model_config = ConfigDict(json_schema_extra=rules(BOUNDED))

    name: str = Field(pattern="^[a-zA-Z][a-zA-Z0-9_]*$")
    """Shown in the status, Events and the analysis metric; not a built-in check's."""
    query: str = Field(min_length=1)
    """PromQL answering one number."""
    max: float | None = None
    """The check fails above this."""
    min: float | None = None
    """The check fails below this."""


class Analysis(ApiModel):
    model_config = ConfigDict(
        json_schema_extra=rules(THRESHOLDS_NEED_PROMETHEUS, METRICS_NEED_PROMETHEUS)
    )

    interval: DurationText = "1m"
    """Time between analyses."""
    window: DurationText | None = None
    """Range of the built-in queries. Default: the interval (at least 4 scrape
    intervals make a rate)."""
    failure_limit: int = Field(2, ge=1)
    """Failed analyses in a row that roll the canary back."""
    progress_deadline: DurationText = "10m"
    """How long a rollout may go without a passing analysis or a new step before it is
    rolled back."""
    min_requests: int = Field(10, ge=0)
    """Fewer canary requests in the window is no data."""
    prometheus: PrometheusEndpoint | None = None
    thresholds: Thresholds | None = None
    metrics: list[MetricCheck] | None = Field(None, max_length=20)
    """Own PromQL checks; {{namespace}}, {{name}}, {{window}} are filled in. One number
    or an empty result (no data)."""

    @property
    def effective_window(self) -> DurationText:
        return self.window or self.interval

    def problems(self, path: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.prometheus is None:
            if self.thresholds is not None:
                found.append(THRESHOLDS_NEED_PROMETHEUS.problem(path))
            if self.metrics is not None:
                found.append(METRICS_NEED_PROMETHEUS.problem(path))
        for index, metric in enumerate(self.metrics or []):
            if metric.max is None and metric.min is None:
                found.append(BOUNDED.problem(f"{path}.metrics.{index}"))
        return found


class GatewayApiRouter(ApiModel):
    """An HTTPRoute with the stable and canary Services as weighted backends."""

    parent_refs: list[Object] = Field(min_length=1)
    """The Gateways the HTTPRoute attaches to (Gateway API ParentReferences)."""
    hostnames: list[str] | None = None
    """The HTTPRoute's hostnames; absent: the Gateway's."""
    path: str = Field("/", pattern="^/")
    """The path prefix the route matches."""


class IngressNginxRouter(ApiModel):
    """ingress-nginx's canary annotations on a copy of the user's Ingress."""

    ingress: str = Field(min_length=1)
    """The user's Ingress (in this namespace) that routes to this service."""


RouterName = Literal["replicas", "gatewayAPI", "ingressNginx"]


class Traffic(ApiModel):
    model_config = ConfigDict(json_schema_extra=rules(GATEWAY_API_SETTINGS, INGRESS_NGINX_SETTINGS))

    router: RouterName = "replicas"
    """How traffic is weighed: by pod counts behind one Service, or by a Gateway
    API HTTPRoute or ingress-nginx (docs/canary.md#traffic)."""
    gateway_api: GatewayApiRouter | None = Field(None, alias="gatewayAPI")
    ingress_nginx: IngressNginxRouter | None = None

    def problems(self, path: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.router == "gatewayAPI" and self.gateway_api is None:
            found.append(GATEWAY_API_SETTINGS.problem(path))
        if self.router == "ingressNginx" and self.ingress_nginx is None:
            found.append(INGRESS_NGINX_SETTINGS.problem(path))
        return found


class CanarySpec(ApiModel):
    """Progressive delivery: a canary Deployment promoted step by step while analysis
    passes, rolled back on failed analysis or a firing alert (docs/canary.md). A new
    rollout starts when the version the spec asks for changes: the pod template, this
    image or template, or a ConfigMap or Secret the pods read."""

    model_config = ConfigDict(json_schema_extra=rules(IMAGE_OR_TEMPLATE))

    image: str | None = Field(None, min_length=1)
    """The version to move to: spec's template with this image in its first container."""
    template: Object | None = None
    """The version to move to, as a whole PodTemplateSpec."""
    steps: list[Step] = Field(min_length=1, max_length=20)
    """Traffic weights in order; after the last, the canary is promoted."""
    analysis: Analysis = Field(default_factory=Analysis, json_schema_extra={"default": {}})
    rollback_on_alerts: bool = True
    """Any firing alert labelled namespace and hardenedservice for this service rolls
    the canary back."""
    bake_window: DurationText = "5m"
    """After promotion, an alert within this time rolls back to the previous revision."""
    revision_history: int = Field(5, ge=1, le=20)
    """Revisions kept in status.revisions."""
    traffic: Traffic = Field(default_factory=Traffic, json_schema_extra={"default": {}})

    def problems(self, path: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.image is not None and self.template is not None:
            found.append(IMAGE_OR_TEMPLATE.problem(path))
        found += self.analysis.problems(f"{path}.analysis")
        found += self.traffic.problems(f"{path}.traffic")
        return found
