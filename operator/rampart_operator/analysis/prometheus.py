"""Prometheus's HTTP API (``/api/v1/query``) as a MetricsProvider."""

from __future__ import annotations

import math

import aiohttp

from .provider import ProviderError

__all__ = ["PrometheusProvider"]


class PrometheusProvider:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float = 5.0) -> None:
        self._session = session
        self._url = url.rstrip("/") + "/api/v1/query"
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def query(self, promql: str) -> float | None:
        try:
            async with self._session.get(
                self._url, params={"query": promql}, timeout=self._timeout
            ) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise ProviderError(f"{self._url}: {error or type(error).__name__}") from error
        if not isinstance(body, dict) or body.get("status") != "success":
            message = body.get("error", "no answer") if isinstance(body, dict) else "no answer"
            raise ProviderError(f"{self._url}: {message}")
        data = body["data"]
        if data["resultType"] == "scalar":
            value = float(data["result"][1])
        elif data["resultType"] == "vector":
            if not data["result"]:
                return None
            if len(data["result"]) > 1:
                raise ProviderError(f"{promql!r} returned {len(data['result'])} series, not one")
            value = float(data["result"][0]["value"][1])
        else:
            raise ProviderError(f"{promql!r} returned a {data['resultType']}, not a number")
        return None if math.isnan(value) else value
