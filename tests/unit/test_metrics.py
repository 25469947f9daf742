from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from rampart_sidecar.metrics import LATENCY_BUCKETS, LatencyHistogram, LoopCounter


def exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    # prometheus_client's own histogram adds a _created series; ours has no use for one.
    return [line for line in text.splitlines() if "_created" not in line]


def test_latency_histogram_exposes_what_prometheus_clients_own_would():
    values = [0.0, 0.0004, 0.001, 0.0010001, 0.0025, 0.2, 0.25, 7.5, 30.0, 31.0, 1e9]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = LatencyHistogram("latency_seconds", "help", ["code"], LATENCY_BUCKETS, ours)
    reference = Histogram(
        "latency_seconds", "help", ["code"], buckets=LATENCY_BUCKETS, registry=theirs
    )
    for code in ("200", "503"):
        for value in values if code == "200" else values[3:6]:
            fast.labels(code).observe(value)
            reference.labels(code).observe(value)
    assert exposition(ours) == exposition(theirs)
    assert 'latency_seconds_bucket{code="200",le="0.001"} 3.0' in exposition(ours)


def test_latency_histogram_with_no_observations_exposes_only_its_help():
    registry = CollectorRegistry()
    LatencyHistogram("idle_seconds", "help", ["code"], LATENCY_BUCKETS, registry)
    assert exposition(registry) == ["# HELP idle_seconds help", "# TYPE idle_seconds histogram"]


def test_loop_counter_exposes_what_prometheus_clients_own_would():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    fast = LoopCounter("cache_requests_total", "help", ["result"], ours)
    reference = Counter("cache_requests_total", "help", ["result"], registry=theirs)
    for result, times in (("hit", 3), ("miss", 1), ("stale", 0)):
        fast.labels(result)
        reference.labels(result)
        for _ in range(times):
            fast.labels(result).inc()
            reference.labels(result).inc()
    assert exposition(ours) == exposition(theirs)
    assert 'cache_requests_total{result="hit"} 3.0' in exposition(ours)
    assert 'cache_requests_total{result="stale"} 0.0' in exposition(ours)
