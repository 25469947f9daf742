"""The administrator's network settings: the monitoring namespace that alone reaches
a sidecar's admin port, and the alert receiver over HTTPS unless opted out."""

from __future__ import annotations

import pytest

from rampart_operator.settings import OperatorSettings, SettingsError


def test_the_receiver_is_served_over_tls_unless_opted_out() -> None:
    assert OperatorSettings.from_env({}).alert_tls is True
    for text, expected in (("false", False), ("0", False), ("True", True), ("yes", True)):
        assert OperatorSettings.from_env({"RAMPART_ALERT_TLS": text}).alert_tls is expected
    with pytest.raises(SettingsError, match="RAMPART_ALERT_TLS: 'maybe' is not true or false"):
        OperatorSettings.from_env({"RAMPART_ALERT_TLS": "maybe"})


def test_the_monitoring_namespace_is_the_administrators() -> None:
    assert OperatorSettings.from_env({}).monitoring_namespace == "monitoring"
    env = {"RAMPART_MONITORING_NAMESPACE": " observability "}
    assert OperatorSettings.from_env(env).monitoring_namespace == "observability"
    assert (
        OperatorSettings.from_env({"RAMPART_MONITORING_NAMESPACE": ""}).monitoring_namespace == ""
    )
