"""#22 item 4: which Prometheus a canary analysis may query is the administrator's choice.

The operator fetches ``canary.analysis.prometheus.url`` from inside the cluster
with its own network position, so with ``RAMPART_ANALYSIS_URLS`` (the chart's
``analysis.allowedUrls``) set, a resource naming any other endpoint is refused:
by the admission webhook (run here as the operator serves it), by the
reconciler's validation, with the field named.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from rampart_operator.admission.server import admission_app
from rampart_operator.settings import OperatorSettings, SettingsError
from rampart_operator.validation import Limits, validate

from .test_rollout_parts import service

ALLOWED = "http://prometheus.monitoring:9090"
FIELD = "spec.canary.analysis.prometheus.url"


def analysed(url: str) -> dict[str, Any]:
    return service(analysis={"prometheus": {"url": url}})


def test_the_setting_is_a_list_of_http_urls():
    settings = OperatorSettings.from_env(
        {"RAMPART_ANALYSIS_URLS": f" {ALLOWED}/ , https://thanos.monitoring:10902"}
    )
    assert settings.analysis_urls == (ALLOWED, "https://thanos.monitoring:10902")
    assert OperatorSettings.from_env({}).analysis_urls == ()
    with pytest.raises(SettingsError, match="RAMPART_ANALYSIS_URLS: 'prometheus:9090'"):
        OperatorSettings.from_env({"RAMPART_ANALYSIS_URLS": "prometheus:9090"})


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        (ALLOWED, False),
        (ALLOWED + "/", False),
        ("http://169.254.169.254/latest/meta-data", True),
        ("http://prometheus.tenant-b:9090", True),
        ("http://prometheus.monitoring:9090.evil.example", True),
    ],
)
def test_a_resource_naming_another_endpoint_is_refused_with_the_field(url, refused):
    problems = [str(p) for p in validate(analysed(url), Limits(analysis_urls=(ALLOWED,)))]
    assert bool(problems) == refused, problems
    if refused:
        assert problems[0].startswith(f"{FIELD}: not an analysis endpoint this operator allows")
    assert validate(analysed(url)) == []  # no allowlist: any, as before


async def review(settings: OperatorSettings, resource: dict[str, Any]) -> dict[str, Any]:
    async def no_namespace(_: str) -> None:
        return None

    app = admission_app(settings, no_namespace)
    async with TestClient(TestServer(app)) as client:
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u1",
                "kind": {"group": "rampart.dev", "version": "v1alpha1", "kind": "HardenedService"},
                "namespace": "shop",
                "operation": "CREATE",
                "object": resource,
            },
        }
        response = await client.post("/validate", json=body)
        assert response.status == 200
        answer: dict[str, Any] = (await response.json())["response"]
        return answer


async def test_the_admission_webhook_refuses_it():
    settings = OperatorSettings(analysis_urls=(ALLOWED,))
    allowed = await review(settings, analysed(ALLOWED))
    assert allowed["allowed"] is True
    refused = await review(settings, analysed("http://10.0.0.1:9090"))
    assert refused["allowed"] is False
    assert FIELD in refused["status"]["message"]
    causes = refused["status"]["details"]["causes"]
    assert any(cause["field"] == FIELD for cause in causes), causes
