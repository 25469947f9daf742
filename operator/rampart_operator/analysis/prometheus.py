"""Prometheus's HTTP API (``/api/v1/query``) as a MetricsProvider.

Its errors end up in the HardenedService's status and Events, where whoever
may read the resource reads them: they name the endpoint without its
credentials or query, and what the endpoint said only as one printable line
of at most 200 characters (an endpoint that is not Prometheus must not be able
to write pages into status).
"""

from __future__ import annotations

import math

import aiohttp
from yarl import URL

from .provider import ProviderError

__all__ = ["PrometheusProvider"]


class PrometheusProvider:
    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float = 5.0) -> None:
        self._session = session
        self._url = url.rstrip("/") + "/api/v1/query"
        self._shown = str(URL(self._url).with_user(None).with_query(None).with_fragment(None))
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def query(self, promql: str) -> float | None:
        try:
            async with self._session.get(
                self._url, params={"query": promql}, timeout=self._timeout
            ) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            said = _bounded(str(error) or type(error).__name__)
            raise ProviderError(f"{self._shown}: {said}") from error
        if not isinstance(body, dict) or body.get("status") != "success":
            message = body.get("error", "no answer") if isinstance(body, dict) else "no answer"
            raise ProviderError(f"{self._shown}: {_bounded(str(message))}")
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


_MAX_SAID = 200


def _bounded(text: str) -> str:
    """What an endpoint said, fit for status and Events: one printable line, bounded."""
    line = "".join(char if char.isprintable() else " " for char in text)
    return line if len(line) <= _MAX_SAID else line[:_MAX_SAID] + "..."
