"""Canary analysis: PromQL checks on the canary's own sidecar metrics.

``queries`` builds the checks and judges their values (pure); a
``MetricsProvider`` (``provider``) answers queries, Prometheus's HTTP API
being the one implementation (``prometheus``); ``analyze`` puts them together.
"""

from __future__ import annotations

from .provider import MetricsProvider, ProviderError
from .queries import BUILT_IN_CHECKS, Check, checks_for, judge
from .run import analyze

__all__ = [
    "BUILT_IN_CHECKS",
    "Check",
    "MetricsProvider",
    "ProviderError",
    "analyze",
    "checks_for",
    "judge",
]
