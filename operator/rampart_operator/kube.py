"""The operator's Kubernetes client: the few calls it needs, over aiohttp.

kopf watches and patches the HardenedServices; this client reads and writes
their children. It authenticates with the credentials kopf's login found (a
service account in the cluster, a kubeconfig outside), and retries what is
worth retrying: 429 (honouring Retry-After), 5xx and broken connections, with
exponential backoff.

Children are written with server-side apply under the field manager
``rampart``: the API server merges what we apply with what others own (an
HPA's replicas, a label kubectl added) and removes what we applied before and
no longer do. Everything else (status, the webhook certificate's Secret and
configurations, annotations on a HardenedService) is a JSON merge patch under
the same manager name.

Errors:
    ApiError            any other failure, with ``status`` and the server's message
    └── NotOwnedError   a child's name is taken by an object someone else owns
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import ssl
import tempfile
from typing import Any

import aiohttp
import kopf

from .crd import GROUP, KIND, PLURAL, VERSION

__all__ = ["ApiError", "KubeClient", "NotOwnedError", "resource_path"]

log = logging.getLogger("rampart.kube")

PLURALS = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Secret"): "secrets",
    ("v1", "Event"): "events",
    ("v1", "Namespace"): "namespaces",
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"): (
        "mutatingwebhookconfigurations"
    ),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"): (
        "validatingwebhookconfigurations"
    ),
    ("batch/v1", "CronJob"): "cronjobs",
    ("apps/v1", "Deployment"): "deployments",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrules",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitors",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitors",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    (f"{GROUP}/{VERSION}", KIND): PLURAL,
}
RETRIABLE = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 5
FIELD_MANAGER = "rampart"
# A resourceVersion no object can have (etcd's revisions start above it). In a
# server-side apply it makes the write create-only: an absent object is created
# (the API server ignores the version then), an existing one refuses it with 409
# and is left as it was, so a name someone else took is never merged into.
NEVER_A_VERSION = "1"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{status}: {message}")

    @property
    def namespace_terminating(self) -> bool:
        """The namespace is being deleted: nothing may be created in it any more."""
        return self.status == 403 and "being terminated" in self.message

    @property
    def transient(self) -> bool:
        """Worth trying again later: a conflict, throttling, or a server error."""
        return self.status == 409 or self.status in RETRIABLE or self.status == 0


class NotOwnedError(ApiError):
    pass


def resource_path(
    api_version: str,
    kind: str,
    namespace: str | None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    # Names come from resources and requests others wrote: one with "/", "?", "#"
    # or ".." would address another object than the one named.
    for part in (namespace, name):
        if part and (part in (".", "..") or set(part) & set("/?#%\\")):
            raise ValueError(f"{part!r} cannot be part of an API path")
    plural = PLURALS[(api_version, kind)]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(cafile=info.ca_path)
    if info.ca_data:
        context.load_verify_locations(cadata=base64.b64decode(info.ca_data).decode())
    if info.certificate_path or info.certificate_data:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = info.certificate_path, info.private_key_path
            if info.certificate_data:
                cert = f"{tmp}/cert.pem"
                with open(cert, "wb") as out:
                    out.write(base64.b64decode(info.certificate_data))
            if info.private_key_data:
                key = f"{tmp}/key.pem"
                with open(key, "wb") as out:
                    out.write(base64.b64decode(info.private_key_data))
            context.load_cert_chain(cert, key)  # type: ignore[arg-type]
    return context


class KubeClient:
    def __init__(self, info: kopf.ConnectionInfo, backoff: float = 0.1) -> None:
        self.server = info.server.rstrip("/")
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        auth = aiohttp.BasicAuth(info.username, info.password or "") if info.username else None
        self._session = aiohttp.ClientSession(
            headers=headers,
            auth=auth,
            connector=aiohttp.TCPConnector(ssl=_ssl_context(info)),
            timeout=aiohttp.ClientTimeout(total=30, sock_connect=5),
        )
        self._backoff = backoff

    async def close(self) -> None:
        await self._session.close()

    async def _request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        delay = self._backoff
        for attempt in range(ATTEMPTS):
            try:
                async with self._session.request(
                    method,
                    self.server + path,
                    json=body,
                    headers={"Content-Type": content_type} if body is not None else None,
                ) as response:
                    if response.status < 400:
                        return await response.json(content_type=None)
                    text = await response.text()
                    error = ApiError(response.status, _message(text))
                    retry_after = response.headers.get("Retry-After", "")
            except (aiohttp.ClientError, TimeoutError) as exc:
                error, retry_after = ApiError(0, f"{type(exc).__name__}: {exc}"), ""
            if (error.status not in RETRIABLE and error.status != 0) or attempt == ATTEMPTS - 1:
                raise error
            wait = float(retry_after) if retry_after.isdigit() else delay * (1 + random.random())
            log.info("retrying %s %s after %s", method, path, error)
            await asyncio.sleep(min(wait, 10.0))
            delay *= 2
        raise AssertionError("unreachable")

    async def version(self) -> dict[str, str]:
        result: dict[str, str] = await self._request("GET", "/version")
        return result

    async def get(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._request(
                "GET", resource_path(api_version, kind, namespace, name)
            )
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return result

    async def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        path = resource_path(api_version, kind, namespace)
        try:
            result = await self._request("GET", f"{path}?labelSelector={label_selector}")
        except ApiError as error:
            if error.status == 404:  # the kind is not served here
                return []
            raise
        items: list[dict[str, Any]] = result.get("items") or []
        return items

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        result: dict[str, Any] = await self._request(
            "POST",
            resource_path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"))
            + f"?fieldManager={FIELD_MANAGER}",
            manifest,
        )
        return result

    async def apply(self, manifest: dict[str, Any], create_only: bool = False) -> dict[str, Any]:
        """Server-side apply: ``manifest`` becomes what field manager ``rampart`` owns.

        ``create_only``: create it, or raise ApiError 409 if it exists (untouched).
        """
        meta = manifest["metadata"]
        if create_only:
            manifest = {**manifest, "metadata": {**meta, "resourceVersion": NEVER_A_VERSION}}
        path = resource_path(manifest["apiVersion"], manifest["kind"], meta.get("namespace"))
        result: dict[str, Any] = await self._request(
            "PATCH",
            f"{path}/{meta['name']}?fieldManager={FIELD_MANAGER}&force=true",
            manifest,
            content_type="application/apply-patch+yaml",  # JSON is YAML
        )
        return result

    async def merge_patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "PATCH",
            resource_path(api_version, kind, namespace, name, subresource)
            + f"?fieldManager={FIELD_MANAGER}",
            patch,
            content_type="application/merge-patch+json",
        )
        return result

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        try:
            await self._request("DELETE", resource_path(api_version, kind, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return False
            raise
        return True


def _message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200]
    return (
        str(body.get("message") or body.get("reason") or text[:200])
        if isinstance(body, dict)
        else text[:200]
    )
