"""The MetricsProvider protocol: one PromQL query in, one number (or nothing) out."""

from __future__ import annotations

from typing import Protocol

__all__ = ["MetricsProvider", "ProviderError"]


class ProviderError(Exception):
    """The provider could not answer (unreachable, an error status, a bad query)."""


class MetricsProvider(Protocol):
    async def query(self, promql: str) -> float | None:
        """The query's single value now; None when it has no data (empty or NaN)."""
        ...
