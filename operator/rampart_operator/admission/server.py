"""The admission webhook server: HardenedService validation and sidecar injection.

Both answer AdmissionReview ``admission.k8s.io/v1``:

- ``POST /validate`` denies a HardenedService with problems and names every
  one with its field path, from the same checks as ``rampart-operator validate``.
- ``POST /inject`` adds the sidecar to a Pod that asks for it
  (``injection.py``). It never denies a Pod: a Pod it cannot inject is let
  through unchanged, with a warning saying why.

Nothing authenticates the caller: anyone who reaches the port can post any
AdmissionReview. So nothing in one is trusted with the operator's
credentials: the only read, a Namespace's labels for ``/inject``, is made
only for a valid namespace name (``request.namespace``, which
``object.metadata.namespace`` must match when given), only when the Pod does
not decide for itself, never for the control plane's or the operator's
namespace, and with ``RAMPART_NAMESPACES`` set only for one of those.

A body that is not an AdmissionReview gets 400; the API server treats that
like an unreachable webhook and applies the configuration's failure policy.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..crd import KIND
from ..kube import ApiError
from ..metrics import OperatorMetrics
from ..settings import OperatorSettings
from ..validation import limits_of, validate
from .injection import (
    decide,
    injection_patch,
    is_namespace_name,
    namespace_matters,
    namespace_readable,
)

__all__ = ["NamespaceLookup", "admission_app", "serve"]

log = logging.getLogger("rampart.admission")

NamespaceLookup = Callable[[str], Awaitable[dict[str, Any] | None]]
# The API server sends objects of at most about 3 MiB.
MAX_BODY = 4 * 1024 * 1024


class MalformedReview(ValueError):
    pass


def _request(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview":
        raise MalformedReview("not an AdmissionReview")
    if body.get("apiVersion") != "admission.k8s.io/v1":
        raise MalformedReview(f"apiVersion {body.get('apiVersion')!r} is not admission.k8s.io/v1")
    request = body.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        raise MalformedReview("request.uid is missing")
    if not isinstance(request.get("object"), dict):
        raise MalformedReview("request.object is missing")
    return request


def _pod_namespace(request: dict[str, Any]) -> str:
    """The Pod's namespace: ``request.namespace``, which the object's must not contradict.

    The API server always sends it for a Pod and refuses an object whose own
    namespace differs before any webhook is called; a review that does
    otherwise was not written by it.
    """
    namespace = request.get("namespace")
    meta = request["object"].get("metadata")
    stated = meta.get("namespace") if isinstance(meta, dict) else None
    if not is_namespace_name(namespace):
        raise MalformedReview(f"request.namespace {namespace!r} is not a namespace's name")
    if stated not in (None, "", namespace):
        raise MalformedReview(
            f"object.metadata.namespace {stated!r} is not request.namespace {namespace!r}"
        )
    assert isinstance(namespace, str)
    return namespace


def _review(uid: str, **response: Any) -> web.Response:
    return web.json_response(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, **{k: v for k, v in response.items() if v is not None}},
        }
    )


def _denial(resource: dict[str, Any], problems: list[Any]) -> dict[str, Any]:
    meta = resource.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "?"
    return {
        "code": 422,
        "reason": "Invalid",
        "message": f"{KIND} {name} is invalid: " + "; ".join(str(p) for p in problems),
        "details": {
            "name": name,
            "kind": KIND,
            "causes": [
                {"reason": "FieldValueInvalid", "field": p.path, "message": p.message}
                for p in problems
            ],
        },
    }


Handler = Callable[[dict[str, Any]], Awaitable[web.Response]]


def _spec_written(request: dict[str, Any]) -> bool:
    """Whether this request sets a spec to judge.

    An update that leaves the spec as it was (annotations, finalizers, a
    deletion in progress) passes even if the spec is invalid: the operator must
    still be able to write its bookkeeping on, and let go of, a HardenedService
    created before the webhook was installed.
    """
    if request.get("operation") == "CREATE":
        return True
    if request.get("operation") != "UPDATE":
        return False
    old = request.get("oldObject")
    return not isinstance(old, dict) or old.get("spec") != request["object"].get("spec")


def admission_app(
    settings: OperatorSettings,
    namespace_lookup: NamespaceLookup,
    metrics: OperatorMetrics | None = None,
    excluded: frozenset[str] = frozenset(),
) -> web.Application:
    metrics = metrics or OperatorMetrics()
    # Never injected, and never read: the operator's own namespace.
    excluded = excluded | {settings.namespace}

    async def validate_hardened_service(request: dict[str, Any]) -> web.Response:
        resource = request["object"]
        written = _spec_written(request)
        problems = validate(resource, limits_of(settings)) if written else []
        metrics.admission.labels("validate", "denied" if problems else "allowed").inc()
        if not problems:
            return _review(request["uid"], allowed=True)
        return _review(request["uid"], allowed=False, status=_denial(resource, problems))

    async def inject_pod(request: dict[str, Any]) -> web.Response:
        pod = request["object"]
        uid = request["uid"]
        namespace = _pod_namespace(request)
        namespace_meta = None
        if namespace_matters(pod, namespace, excluded) and namespace_readable(
            namespace, settings.namespaces, excluded
        ):
            try:
                namespace_meta = await namespace_lookup(namespace)
            except ApiError as error:  # the pod may still ask for itself
                log.warning("namespace %s: could not read its labels (%s)", namespace, error)
        decision = decide(pod, namespace, namespace_meta, excluded)
        if not decision.inject:
            metrics.admission.labels("inject", "skipped").inc()
            warnings = [decision.warning] if decision.warning else None
            return _review(uid, allowed=True, warnings=warnings)
        try:
            patch = injection_patch(pod, settings)
        except ValueError as error:
            metrics.admission.labels("inject", "skipped").inc()
            return _review(uid, allowed=True, warnings=[f"rampart: not injected: {error}"])
        meta = pod.get("metadata") or {}
        log.info(
            "injected the sidecar into a pod %s in %s (%s)",
            meta.get("name") or meta.get("generateName") or "",
            namespace,
            decision.reason,
        )
        metrics.admission.labels("inject", "injected").inc()
        return _review(
            uid,
            allowed=True,
            patchType="JSONPatch",
            patch=base64.b64encode(json.dumps(patch).encode()).decode(),
        )

    def endpoint(
        webhook: str, handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve_review(http: web.Request) -> web.Response:
            try:
                request = _request(json.loads(await http.read()))
            except (ValueError, RecursionError) as error:
                metrics.admission.labels(webhook, "malformed").inc()
                return web.Response(status=400, text=f"{error}\n")
            try:
                return await handler(request)
            except (AttributeError, TypeError, KeyError, ValueError) as error:
                # An object of a shape the API server never sends: not ours to crash on.
                metrics.admission.labels(webhook, "malformed").inc()
                return web.Response(status=400, text=f"malformed object: {error!r}\n")

        return serve_review

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/validate", endpoint("validate", validate_hardened_service))
    app.router.add_post("/inject", endpoint("inject", inject_pod))
    app.router.add_get("/healthz", healthz)
    return app


async def serve(
    app: web.Application, host: str, port: int, context: ssl.SSLContext
) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    return runner
