"""The admin listener: metrics, liveness, readiness and a detailed health report.

It runs on its own port so that probes and scrapes are never queued behind
application traffic, rate-limited, or refused by the circuit breaker.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from .cache import ResponseCache
from .policies import BreakerState
from .proxy import Proxy

__all__ = ["build_admin_app", "check_upstream", "health_report"]

PROXY_KEY = web.AppKey("proxy", Proxy)
CACHE_KEY = web.AppKey("cache", ResponseCache)
TOKEN_ENV = "RAMPART_CACHE_ADMIN_TOKEN"  # noqa: S105 - a variable name, not a secret
_CHECK_TIMEOUT = 1.0


async def check_upstream(proxy: Proxy) -> tuple[bool, str]:
    """Whether the upstream answers now: a GET of ``upstream.healthPath``, else a TCP connect."""
    settings = proxy.settings.upstream
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            if settings.health_path:
                async with proxy.session.get(
                    settings.url + settings.health_path, allow_redirects=False
                ) as response:
                    if response.status >= 500:
                        return False, f"{settings.health_path} answered {response.status}"
                    return True, f"{settings.health_path} answered {response.status}"
            url = URL(settings.url)
            port = url.port or (443 if url.scheme == "https" else 80)
            _, writer = await asyncio.open_connection(url.host, port)
            writer.close()
            return True, "accepts connections"
    except TimeoutError:
        return False, f"no answer within {_CHECK_TIMEOUT}s"
    except (aiohttp.ClientError, OSError) as error:
        return False, str(error) or type(error).__name__


async def health_report(proxy: Proxy) -> dict[str, Any]:
    """Each component with its state, and a score from 0 (down) to 100 (all well).

    The score weighs what a caller would feel: upstream reachable 50, breaker
    closed 30 (half-open 15), spare concurrency up to 20. Draining scores 0.
    """
    upstream_ok, upstream_detail = await check_upstream(proxy)
    breaker = proxy.breaker.state
    utilization = proxy.concurrency.utilization()
    breaker_points = {BreakerState.CLOSED: 30, BreakerState.HALF_OPEN: 15, BreakerState.OPEN: 0}
    score = (
        (50 if upstream_ok else 0)
        + breaker_points[breaker]
        + round(20 * (1 - min(1.0, utilization)))
    )
    if proxy.draining:
        score = 0
    return {
        "score": score,
        "ready": upstream_ok and not proxy.draining,
        "components": {
            "upstream": {"state": "up" if upstream_ok else "down", "detail": upstream_detail},
            "circuitBreaker": {
                "state": breaker.name.lower().replace("_", "-"),
                "enabled": proxy.breaker.enabled,
            },
            "concurrency": {
                "inFlight": proxy.in_flight,
                "queued": proxy.concurrency.queued,
                "limit": proxy.concurrency.limit or None,
                "utilization": round(utilization, 3),
            },
            "rateLimit": {"enabled": proxy.rate_limiter.enabled},
            "lifecycle": {"state": "draining" if proxy.draining else "serving"},
        },
    }


async def _metrics(request: web.Request) -> web.Response:
    registry = request.app[PROXY_KEY].recorder.registry
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _healthz(request: web.Request) -> web.Response:
    # Liveness only says the event loop turns; a sick upstream must not get
    # the sidecar restarted.
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    proxy = request.app[PROXY_KEY]
    if proxy.draining:
        return web.json_response({"ready": False, "reason": "draining"}, status=503)
    ok, detail = await check_upstream(proxy)
    return web.json_response(
        {"ready": ok, "reason": None if ok else f"upstream: {detail}"}, status=200 if ok else 503
    )


async def _detailed(request: web.Request) -> web.Response:
    return web.json_response(await health_report(request.app[PROXY_KEY]))


def cache_admin_token(cache: ResponseCache) -> str | None:
    """Read on every call, so a rotated Secret takes effect without a restart."""
    token = os.environ.get(TOKEN_ENV)
    if not token and cache.settings.admin_token_file:
        try:
            token = Path(cache.settings.admin_token_file).read_text().strip()
        except OSError:
            token = None
    return token or None


async def _cache_stats(request: web.Request) -> web.Response:
    return web.json_response(await request.app[CACHE_KEY].stats())


async def _cache_delete(request: web.Request) -> web.Response:
    cache = request.app[CACHE_KEY]
    token = cache_admin_token(cache)
    offered = request.headers.get("Authorization", "").encode()
    if token is None:
        # With no token configured, cache-busting is off rather than open: say so,
        # instead of asking for a token nothing would accept.
        where = cache.settings.admin_token_file
        why = f"{where} cannot be read" if where else f"no cache.adminTokenFile nor {TOKEN_ENV}"
        return web.json_response(
            {"error": f"cache busting is off: {why}"},
            status=403,
        )
    if not hmac.compare_digest(offered, f"Bearer {token}".encode()):
        return web.json_response(
            {"error": "a valid bearer token is required"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="rampart-cache"'},
        )
    prefix = request.query.get("prefix")
    path = request.query.get("key")
    deleted = await cache.tiers.invalidate(path_prefix=prefix, path=path)
    return web.json_response({"deleted": deleted})


def build_admin_app(proxy: Proxy, cache: ResponseCache | None = None) -> web.Application:
    app = web.Application()
    app[PROXY_KEY] = proxy
    if cache is not None:
        app[CACHE_KEY] = cache
        app.router.add_get("/cache/stats", _cache_stats)
        app.router.add_delete("/cache", _cache_delete)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/health/detailed", _detailed)
    return app
