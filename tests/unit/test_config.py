from __future__ import annotations

from pathlib import Path

import pytest

from rampart_common.durations import format_duration, parse_duration
from rampart_common.errors import ConfigError
from rampart_common.sidecar_settings import load_settings, parse_host_port, settings_from_mapping

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sidecar.yaml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5s", 1.5),
        ("0", 0),
        ("2d", 172800),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "fast", "5 s", "-1s", "1x", "s"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.25, 30, 300, 5400, 1.5, 0.001])
def test_durations_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_the_example_file_is_valid_and_round_trips():
    settings = load_settings(EXAMPLE)
    assert settings.retries.attempts == 2
    assert settings.timeouts.routes[0].request == 5.0
    dumped = settings.model_dump(by_alias=True, mode="json")
    assert settings_from_mapping(dumped) == settings
    assert "retryOn" in dumped["retries"]
    assert "circuitBreaker" in dumped


def test_every_problem_is_reported_with_its_path():
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(
            {
                "timeouts": {
                    "request": "soon",
                    "routes": [{"pathPrefix": "nope", "request": "1s"}],
                },
                "retries": {
                    "attempts": 99,
                    "retryOn": ["sometimes"],
                    "backoff": {"base": "1s", "max": "10ms"},
                },
                "rateLimit": {"key": "cookie"},
                "circuitBreaker": {"consecutiveFailures": "five"},
                "unknown": 1,
            }
        )
    problems = "\n".join(caught.value.problems)
    for path in (
        "timeouts.request:",
        "timeouts.routes.0.pathPrefix: must start with /",
        "retries.attempts:",
        "retries.retryOn.0:",
        "retries.backoff: max must not be below base",
        "rateLimit.key:",
        "circuitBreaker.consecutiveFailures:",
        "unknown: unknown field",
    ):
        assert path in problems, path


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="different ports"):
        settings_from_mapping({"listen": ":8000", "admin": "127.0.0.1:8000"})
    with pytest.raises(ConfigError, match="appears twice"):
        settings_from_mapping(
            {
                "timeouts": {
                    "routes": [
                        {"pathPrefix": "/a", "request": "1s"},
                        {"pathPrefix": "/a", "request": "2s"},
                    ]
                }
            }
        )


def test_yaml_on_is_a_key_not_a_boolean(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("retries:\n  on: [reset]\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    # Under YAML 1.1 this key would be True and the message "Keys should be strings".
    assert caught.value.problems == ["retries.on: unknown field"]


def test_file_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_settings(bad)


def test_upstream_idle_timeout_stays_below_common_app_keepalives():
    # gunicorn closes idle connections after 2 s, Node and uvicorn after 5 s.
    assert settings_from_mapping({}).upstream.idle_timeout < 2.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0.0.0:80", ("0.0.0.0", 80)), (":8000", ("0.0.0.0", 8000)), ("[::1]:9", ("::1", 9))],
)
def test_host_port(text, expected):
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["8000", "host:", "host:99999", "host:http"])
def test_bad_host_port(text):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_host_port(text)
