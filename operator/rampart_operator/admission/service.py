"""The admission webhooks as one running part of the operator: keeper, server, lookups."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..kube import ApiError, KubeClient
from ..metrics import OperatorMetrics
from ..settings import OperatorSettings
from .injection import is_namespace_name
from .keeper import CertKeeper, Clock, server_context
from .server import admission_app, serve

__all__ = ["Admission", "NamespaceCache"]

log = logging.getLogger("rampart.admission")

# Seconds between attempts to get a first certificate before serving.
FIRST_CERTIFICATE_RETRY = 5.0


class NamespaceCache:
    """Namespace metadata for injection decisions, each kept ``ttl`` seconds.

    A namespace labelled for injection a moment ago may be seen unlabelled for
    up to ``ttl`` seconds; that is the price of not reading it for every Pod.
    At most ``size`` namespaces are kept (the oldest read goes first), so
    made-up names cannot grow it without end. A name that is not a
    namespace's is refused with ValueError, never put into an API path.
    """

    def __init__(
        self,
        client: KubeClient,
        ttl: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        size: int = 1024,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self.size = size
        self._seen: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def __call__(self, name: str) -> dict[str, Any] | None:
        if not is_namespace_name(name):
            raise ValueError(f"{name!r} is not a namespace's name")
        seen = self._seen.get(name)
        if seen is not None and self.clock() - seen[0] < self.ttl:
            return seen[1]
        namespace = await self.client.get("v1", "Namespace", None, name)
        meta = namespace.get("metadata") if namespace else None
        self._seen.pop(name, None)
        self._seen[name] = (self.clock(), meta)
        while len(self._seen) > self.size:
            del self._seen[next(iter(self._seen))]
        return meta


class Admission:
    def __init__(
        self,
        settings: OperatorSettings,
        client: KubeClient,
        metrics: OperatorMetrics,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.context = server_context()
        self.keeper = CertKeeper(client, settings, self.context, metrics, clock)
        self.app = admission_app(
            settings,
            NamespaceCache(client),
            metrics,
            excluded=frozenset({settings.namespace}),
        )
        self.serving = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run()))

    async def _run(self) -> None:
        # The server starts only with a certificate; until then the API server
        # sees the webhook as down and applies each configuration's failurePolicy.
        while True:
            try:
                await self.keeper.check()
                break
            except (ApiError, OSError, ValueError) as error:  # ValueError: unreadable PEM
                log.warning("no webhook certificate yet (%s); retrying", error)
                await asyncio.sleep(FIRST_CERTIFICATE_RETRY)
        settings = self.settings
        self._runner = await serve(
            self.app, settings.webhook_host, settings.webhook_port, self.context
        )
        self.serving.set()
        log.info("admission webhooks on port %d", self.port)
        await self.keeper.run()

    @property
    def port(self) -> int:
        """The port served on: the one bound when the settings said 0."""
        if self._runner is None:
            raise RuntimeError("not serving yet")
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        self.keeper.close()
