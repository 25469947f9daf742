"""Per-route request timeouts: the longest matching path prefix wins."""

from __future__ import annotations

from dataclasses import dataclass

from rampart_common.sidecar_settings import TimeoutSettings

__all__ = ["Route", "RouteTable"]


@dataclass(frozen=True, slots=True)
class Route:
    """What the proxy needs to know about the route a request falls under."""

    name: str  # the metrics label: a configured name, never the raw path
    request_timeout: float


class RouteTable:
    """Maps a request path to its ``Route``.

    >>> from rampart_common.sidecar_settings import TimeoutSettings
    >>> table = RouteTable(TimeoutSettings.model_validate(
    ...     {"request": "30s", "routes": [{"pathPrefix": "/search", "request": "5s"}]}))
    >>> table.match("/search/books")
    Route(name='/search', request_timeout=5.0)
    >>> table.match("/cart").name
    'default'
    """

    def __init__(self, settings: TimeoutSettings) -> None:
        self.default = Route("default", settings.request)
        # Longest prefix first, so the first match is the most specific one.
        self._routes = sorted(
            ((r.path_prefix, Route(r.route_name, r.request)) for r in settings.routes),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    def match(self, path: str) -> Route:
        for prefix, route in self._routes:
            if path.startswith(prefix):
                return route
        return self.default
