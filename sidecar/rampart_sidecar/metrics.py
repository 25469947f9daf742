"""Every metric the sidecar exports, owned by one ``Recorder``.

Base units, one prefix, and a ``route`` label that is a configured route name
or ``default`` — never the raw path, so a scan of random URLs cannot grow the
series count. Unknown methods are folded into ``other`` for the same reason.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Recorder"]

# From 1 ms to 30 s: the sidecar's own answers sit at the bottom, timeouts at the top.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)


class Recorder:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.request_duration = Histogram(
            "rampart_http_request_duration_seconds",
            "Time from request received to response headers sent, by the sidecar.",
            ["method", "code", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_duration = Histogram(
            "rampart_upstream_request_duration_seconds",
            "Time of one attempt against the upstream, until its response headers.",
            ["code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.circuit_state = Gauge(
            "rampart_circuit_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            registry=self.registry,
        )
        self.retries = Counter(
            "rampart_retries_total", "Attempts made after the first.", registry=self.registry
        )
        self.timeouts = Counter(
            "rampart_timeouts_total",
            "Requests answered 504 because the route's timeout ran out.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "rampart_rejected_total",
            "Requests the sidecar answered itself without a successful upstream call.",
            ["reason"],
            registry=self.registry,
        )
        self.inflight = Gauge(
            "rampart_inflight_requests",
            "Requests being handled by the proxy listener.",
            registry=self.registry,
        )
        self.cache_requests = Counter(
            "rampart_cache_requests_total",
            "Cacheable-method requests by what the cache did: hit, miss, stale, bypass.",
            ["result"],
            registry=self.registry,
        )
        self.cache_backend_errors = Counter(
            "rampart_cache_backend_errors_total",
            "Failed cache backend operations (each is served from memory or upstream).",
            ["backend"],
            registry=self.registry,
        )
        self.cache_backend_up = Gauge(
            "rampart_cache_backend_up",
            "1 while the cache backend answers, 0 while it is skipped.",
            ["backend"],
            registry=self.registry,
        )
        self.cache_entries = Gauge(
            "rampart_cache_entries",
            "Entries per tier (for redis: keys in its database).",
            ["tier"],
            registry=self.registry,
        )
        self.cache_bytes = Gauge(
            "rampart_cache_bytes",
            "Bytes per tier (for redis: its used_memory).",
            ["tier"],
            registry=self.registry,
        )
        # labels() takes a lock and builds a key on each call; the hot path
        # looks the child up here instead.
        self._request_children: dict[tuple[str, int, str], Histogram] = {}
        self._upstream_children: dict[int, Histogram] = {}

    def observe_request(self, method: str, code: int, route: str, seconds: float) -> None:
        key = (method, code, route)
        child = self._request_children.get(key)
        if child is None:
            label = method if method in KNOWN_METHODS else "other"
            child = self.request_duration.labels(label, str(code), route)
            self._request_children[key] = child
        child.observe(seconds)

    def observe_upstream(self, code: int, seconds: float) -> None:
        """``code`` 0 means no response: connect failure, reset or timeout."""
        child = self._upstream_children.get(code)
        if child is None:
            child = self.upstream_duration.labels(str(code))
            self._upstream_children[code] = child
        child.observe(seconds)
