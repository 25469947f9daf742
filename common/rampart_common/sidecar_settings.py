"""The sidecar's settings tree.

Its keys are exactly the fields of ``spec.sidecar`` in the HardenedService API,
so the operator renders the file from the resource unchanged and the CRD, the
file and the validation errors all speak the same names. Durations are strings
(``250ms``, ``30s``); sizes are bytes.

A minimal file::

    timeouts: {request: 30s, routes: [{pathPrefix: /search, request: 5s}]}
    retries: {attempts: 2, perTryTimeout: 2s, retryOn: [connect-failure, gateway-error]}
    circuitBreaker: {consecutiveFailures: 5, openFor: 30s, halfOpenRequests: 3}
    concurrency: {maxInFlight: 100, maxQueued: 50}
    rateLimit: {requestsPerSecond: 200, burst: 400, key: client-ip}

Every block is optional; absent blocks take the defaults below. A policy whose
limit is 0 is off (``retries.attempts: 0``, ``concurrency.maxInFlight: 0``, ...).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from .durations import DURATION_OR_ZERO_PATTERN, format_duration, parse_duration
from .errors import ConfigError

__all__ = [
    "Backoff",
    "CacheRoute",
    "CacheSettings",
    "CircuitBreakerSettings",
    "ConcurrencySettings",
    "LoggingSettings",
    "MemoryCacheSettings",
    "RateLimitSettings",
    "RedisCacheSettings",
    "RetrySettings",
    "RouteTimeout",
    "ServerSettings",
    "ShutdownSettings",
    "SidecarSettings",
    "TimeoutSettings",
    "UpstreamSettings",
    "load_settings",
    "load_yaml",
    "parse_host_port",
    "settings_from_mapping",
]


def _seconds(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):  # bool is an int; a duration of True is a mistake
        raise ValueError("a duration is a string such as 30s")
    return value


Duration = Annotated[
    float,
    BeforeValidator(_seconds),
    PlainSerializer(format_duration, return_type=str),
    # In the CRD a duration is a string; the marker lets the generator format defaults.
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_OR_ZERO_PATTERN, "x-rampart-duration": True}
    ),
]


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with /")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute)]

RetryCondition = Literal["connect-failure", "reset", "timeout", "gateway-error", "5xx"]
IDEMPOTENT_METHODS = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")


class _Settings(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class UpstreamSettings(_Settings):
    """Where the application listens and how the pool to it behaves."""

    url: str = "http://127.0.0.1:8080"
    connect_timeout: Duration = Field(1.0, gt=0)
    # Below every common application keep-alive default (gunicorn 2s, Node and
    # uvicorn 5s), so the sidecar closes an idle connection before the
    # application does and never writes a request into a closing socket.
    idle_timeout: Duration = Field(1.5, gt=0)
    max_connections: int = Field(1024, ge=1)
    # GET this path for readiness; when unset, a TCP connect is the check.
    health_path: AbsolutePath | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class ServerSettings(_Settings):
    """Limits on what clients may send to the proxy listener."""

    # Also the deadline for a new connection's first request line and headers,
    # which is what stops a client that sends one byte a second.
    idle_timeout: Duration = Field(75.0, gt=0)
    max_header_bytes: int = Field(8190, ge=1024, le=1_048_576)
    # Fields in a request head, and again in a trailer section (Apache's
    # LimitRequestFields): 10,000 one-byte fields fit in the byte limit.
    max_header_fields: int = Field(100, ge=1, le=10_000)
    max_request_body_bytes: int = Field(10 * 1024 * 1024, ge=0)


class RouteTimeout(_Settings):
    """A timeout for every path under ``pathPrefix``; the longest prefix wins."""

    name: str | None = Field(None, pattern=r"^[a-zA-Z0-9_.:-]{1,63}$")
    path_prefix: AbsolutePath
    request: Duration = Field(gt=0)

    @property
    def route_name(self) -> str:
        return self.name or self.path_prefix


class TimeoutSettings(_Settings):
    # Until the upstream's response headers arrive, retries included.
    request: Duration = Field(30.0, gt=0)
    # The longest silence while a body streams; event streams and WebSockets are exempt.
    idle: Duration = Field(60.0, gt=0)
    routes: list[RouteTimeout] = Field(default_factory=list)

    @field_validator("routes")
    @classmethod
    def _unique_prefixes(cls, routes: list[RouteTimeout]) -> list[RouteTimeout]:
        seen: set[str] = set()
        for route in routes:
            if route.path_prefix in seen:
                raise ValueError(f"pathPrefix {route.path_prefix} appears twice")
            seen.add(route.path_prefix)
        return routes


class Backoff(_Settings):
    base: Duration = Field(0.025, gt=0)
    max: Duration = Field(0.25, gt=0)

    @model_validator(mode="after")
    def _max_not_below_base(self) -> Backoff:
        if self.max < self.base:
            raise ValueError("max must not be below base")
        return self


class RetrySettings(_Settings):
    # Retries after the first try: attempts 2 means at most 3 tries (Istio's meaning).
    attempts: int = Field(2, ge=0, le=10)
    per_try_timeout: Duration | None = Field(None, gt=0)
    backoff: Backoff = Field(default_factory=Backoff)
    # Retries in flight may be at most this share of requests in flight (Envoy's retry budget).
    budget_percent: float = Field(20.0, ge=0, le=100)
    min_retry_concurrency: int = Field(3, ge=0)
    # Not ``on``: YAML 1.1 (and so kubectl) reads that key as the boolean true.
    retry_on: list[RetryCondition] = Field(
        default_factory=lambda: list[RetryCondition](["connect-failure", "gateway-error"])
    )
    status_codes: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    methods: list[str] = Field(default_factory=lambda: list(IDEMPOTENT_METHODS))
    max_buffered_body_bytes: int = Field(64 * 1024, ge=0)

    @field_validator("methods")
    @classmethod
    def _upper_methods(cls, methods: list[str]) -> list[str]:
        return [method.upper() for method in methods]


class CircuitBreakerSettings(_Settings):
    # 0 turns the breaker off.
    consecutive_failures: int = Field(5, ge=0)
    open_for: Duration = Field(30.0, gt=0)
    half_open_requests: int = Field(3, ge=1)


class ConcurrencySettings(_Settings):
    # 0 means no limit.
    max_in_flight: int = Field(0, ge=0)
    max_queued: int = Field(0, ge=0)


class RateLimitSettings(_Settings):
    # 0 turns the limiter off.
    requests_per_second: float = Field(0.0, ge=0)
    burst: int | None = Field(None, ge=1)
    # "client-ip", or "header:NAME" to key on a header such as an API key.
    key: str = Field("client-ip", pattern=r"^(client-ip|header:[A-Za-z0-9!#$%&'*+.^_`|~-]+)$")
    # Buckets kept at most; the least recently seen key is forgotten first.
    max_keys: int = Field(100_000, ge=1)

    @property
    def bucket_size(self) -> int:
        return self.burst if self.burst is not None else max(1, round(self.requests_per_second))


class ShutdownSettings(_Settings):
    # Below Kubernetes' default 30s grace period, so the sidecar exits before SIGKILL.
    drain_timeout: Duration = Field(25.0, ge=0)


class LoggingSettings(_Settings):
    level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    # Never logged, in addition to Authorization, Proxy-Authorization, Cookie and Set-Cookie.
    secret_headers: list[str] = Field(default_factory=list)


class CacheRoute(_Settings):
    """Paths whose responses may be cached for ``ttl`` even without caching headers."""

    path_prefix: AbsolutePath
    # None: the cache-wide ttl; 0s: only what the response's own headers allow.
    ttl: Duration | None = Field(None, ge=0)


class MemoryCacheSettings(_Settings):
    max_entries: int = Field(10_000, ge=1)
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024)


class RedisCacheSettings(_Settings):
    # In the file; the HardenedService refers to a Secret holding it instead.
    # RAMPART_CACHE_REDIS_URL stands in when this is unset.
    url: str | None = None
    # Each command's limit: a slow Redis costs a request at most this much.
    timeout: Duration = Field(0.05, gt=0)
    max_connections: int = Field(64, ge=1)
    key_prefix: str = "rampart:cache:"

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class CacheSettings(_Settings):
    """The response cache; absent means off.

    Responses with explicit freshness (``s-maxage``, ``max-age``, ``Expires``)
    are cached on every path. Responses without caching headers are cached for
    ``ttl`` when it is set: on every path, or only under ``routes`` when given.
    """

    ttl: Duration = Field(0.0, ge=0)
    routes: list[CacheRoute] = Field(default_factory=list)
    # How long past expiry an entry may still answer for a failing upstream
    # (a response's own stale-if-error directive takes precedence).
    stale_if_error: Duration = Field(300.0, ge=0)
    max_body_bytes: int = Field(1024 * 1024, ge=0)
    # How long concurrent misses for one key wait for the first one's answer.
    coalesce_timeout: Duration = Field(5.0, gt=0)
    memory: MemoryCacheSettings = Field(default_factory=MemoryCacheSettings)
    redis: RedisCacheSettings = Field(default_factory=RedisCacheSettings)
    # DELETE /cache needs a bearer token from here or RAMPART_CACHE_ADMIN_TOKEN.
    admin_token_file: str | None = None
    # A response with Set-Cookie: "pass" never stores it (Varnish's and nginx's
    # default: a session cookie must not reach another client); "strip" stores
    # it without the cookie, which only the client whose request went upstream
    # gets; "store" keeps the cookie and hands it to every hit (RFC 9111, as
    # Squid does), for origins whose cookies are not per user.
    set_cookie: Literal["pass", "strip", "store"] = "pass"


class SidecarSettings(_Settings):
    listen: str = "0.0.0.0:8000"
    admin: str = "0.0.0.0:9901"
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    retries: RetrySettings = Field(default_factory=RetrySettings)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    concurrency: ConcurrencySettings = Field(default_factory=ConcurrencySettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    cache: CacheSettings | None = None

    @field_validator("listen", "admin")
    @classmethod
    def _host_port(cls, value: str) -> str:
        parse_host_port(value)
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> SidecarSettings:
        port = parse_host_port(self.listen)[1]
        # Port 0 is "any free port": two of them never clash.
        if port and port == parse_host_port(self.admin)[1]:
            raise ValueError(f"listen and admin must use different ports (both use {port})")
        return self


def parse_host_port(value: str) -> tuple[str, int]:
    """``"0.0.0.0:8000"`` → ``("0.0.0.0", 8000)``; ``"[::1]:80"`` and ``":80"`` work too."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with only ``true``/``false`` as booleans, as in YAML 1.2 and JSON.

    PyYAML follows YAML 1.1, where ``on``, ``off``, ``yes`` and ``no`` are
    booleans too; a key or value spelt so would silently change meaning.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_all(text: str) -> list[Any]:
    """Every document of a YAML stream, read as YAML 1.2 (``on`` stays a string)."""
    return list(yaml.load_all(text, Loader=_Yaml12Loader))


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append(f"{path}: {message.removeprefix('Value error, ')}")
    return problems


def settings_from_mapping(data: dict[str, Any]) -> SidecarSettings:
    """Validate a parsed mapping; raise ``ConfigError`` listing every problem by field path."""
    try:
        return SidecarSettings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from error


def load_settings(path: Path | None, overrides: dict[str, Any] | None = None) -> SidecarSettings:
    """Read the YAML (or JSON) file, apply dotted-path overrides from flags, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = load_yaml(path.read_text())
        except OSError as error:
            raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from error
        except yaml.YAMLError as error:
            raise ConfigError([f"{path}: not valid YAML: {error}"]) from error
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError([f"{path}: the top level must be a mapping"])
        data = loaded
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([f"{dotted}: {part} is not a mapping"])
            node = child
        node[leaf] = value
    return settings_from_mapping(data)
