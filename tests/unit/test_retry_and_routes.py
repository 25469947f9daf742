from __future__ import annotations

import pytest

from rampart_common.sidecar_settings import RetrySettings, TimeoutSettings
from rampart_sidecar.policies import RetryBudget, RetryPolicy, RouteTable


def test_only_configured_methods_are_retried():
    policy = RetryPolicy(RetrySettings())
    assert [policy.retries_method(m) for m in ("GET", "PUT", "POST", "PATCH")] == [
        True,
        True,
        False,
        False,
    ]
    assert RetryPolicy(RetrySettings(methods=["post"])).retries_method("POST")
    assert not RetryPolicy(RetrySettings(attempts=0)).retries_method("GET")


@pytest.mark.parametrize(
    ("conditions", "codes", "status", "expected"),
    [
        (["gateway-error"], [], 502, True),
        (["gateway-error"], [], 500, False),
        (["5xx"], [], 500, True),
        (["connect-failure"], [], 503, False),
        (["connect-failure"], [429], 429, True),
        (["5xx"], [], 404, False),
    ],
)
def test_status_conditions(conditions, codes, status, expected):
    policy = RetryPolicy(RetrySettings(retry_on=conditions, status_codes=codes))
    assert policy.retries_status(status) is expected


def test_error_conditions_and_per_try_timeout_as_gateway_error():
    policy = RetryPolicy(RetrySettings(retry_on=["connect-failure"]))
    assert policy.retries_error("connect-failure")
    assert not policy.retries_error("reset")
    assert not policy.retries_error("timeout")
    assert RetryPolicy(RetrySettings(retry_on=["gateway-error"])).retries_error("timeout")


def test_backoff_is_full_jitter_capped_at_max():
    top = RetryPolicy(RetrySettings(backoff={"base": "10ms", "max": "50ms"}), rand=lambda: 1.0)
    assert [round(top.backoff(n), 3) for n in range(5)] == [0.01, 0.02, 0.04, 0.05, 0.05]
    bottom = RetryPolicy(RetrySettings(), rand=lambda: 0.0)
    assert bottom.backoff(3) == 0.0


def test_retry_budget_is_a_share_of_requests_with_a_floor():
    budget = RetryBudget(RetrySettings(budget_percent=20, min_retry_concurrency=2))
    budget.requests_in_flight = 50  # 20% of 50 = 10
    assert sum(budget.try_acquire() for _ in range(15)) == 10
    budget.release()
    assert budget.try_acquire()
    small = RetryBudget(RetrySettings(budget_percent=20, min_retry_concurrency=2))
    small.requests_in_flight = 1  # 20% of 1 rounds to 0: the floor allows 2
    assert [small.try_acquire() for _ in range(3)] == [True, True, False]


def test_longest_prefix_wins_and_names_default_to_the_prefix():
    table = RouteTable(
        TimeoutSettings.model_validate(
            {
                "request": "30s",
                "routes": [
                    {"pathPrefix": "/api", "request": "10s"},
                    {"name": "search", "pathPrefix": "/api/search", "request": "2s"},
                ],
            }
        )
    )
    assert table.match("/api/search/x").name == "search"
    assert table.match("/api/search/x").request_timeout == 2.0
    assert table.match("/api/cart").name == "/api"
    assert table.match("/").name == "default"
    assert table.match("/").request_timeout == 30.0
