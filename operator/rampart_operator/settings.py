"""The operator's own settings, from its environment (the Helm chart sets them).

Every field has a default and says its unit and why it exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import __version__

__all__ = ["OperatorSettings", "SettingsError", "mode_for_server"]

SidecarMode = Literal["auto", "native", "container"]


LOG_LEVELS = ("debug", "info", "warning", "error")


# Pod Security levels, strictest first (podsecurity.py applies them).
LEVELS = ("restricted", "baseline", "privileged")


class SettingsError(ValueError):
    """A RAMPART_* environment variable the operator cannot use, with why."""


@dataclass(frozen=True)
class OperatorSettings:
    # The sidecar image; pinned to the operator's own version so both move together.
    sidecar_image: str = f"ghcr.io/rampart-dev/rampart:{__version__}"
    # native: an init container with restartPolicy Always (Kubernetes >= 1.29),
    # started before and stopped after the app. "container": a plain container.
    # "auto": native when the API server is 1.29 or newer (and when rendering offline).
    sidecar_mode: SidecarMode = "auto"
    # The operator's log level (debug, info, warning, error); kopf's follows it.
    log_level: str = "info"
    # Seconds between full re-checks of every HardenedService. Children deleted or
    # edited by hand are restored at once through watch events; this timer is the
    # safety net (and what notices a Secret that appeared), so it can be long:
    # each tick reads every child of every HardenedService.
    drift_interval: float = 300.0
    # Namespaces to watch; empty means all.
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    # Port of the operator's /metrics; 0 turns it off.
    metrics_port: int = 8080
    # Seconds between looks at a rollout in progress (pauses, analysis due,
    # canary pods ready). Alerts do not wait for it: they act at once.
    rollout_tick: float = 2.0
    # The Alertmanager webhook receiver: port (0 turns it off) and the bearer
    # token it demands. Without a token the receiver does not start.
    alert_port: int = 9095
    alert_host: str = "0.0.0.0"
    alert_token: str = field(default="", repr=False)
    # Alertmanager's URL, polled every alert_poll_interval seconds as a
    # fallback for lost webhooks; empty turns polling off.
    alertmanager_url: str = ""
    # The Prometheus URLs a canary analysis may query (RAMPART_ANALYSIS_URLS): the
    # operator fetches them with its own network position, so which ones is an
    # administrator's choice. Empty: any (a cluster with one trusted Prometheus).
    analysis_urls: tuple[str, ...] = field(default_factory=tuple)
    # The Pod Security level every HardenedService template must meet once hardened
    # (RAMPART_POD_SECURITY), and the serviceAccountNames one may use
    # (RAMPART_SERVICE_ACCOUNTS; empty: any). The administrator's, never the resource's.
    pod_security: str = "restricted"
    service_accounts: tuple[str, ...] = field(default_factory=tuple)
    alert_poll_interval: float = 15.0
    # Serve the receiver over HTTPS with the webhook server's certificate
    # (RAMPART_ALERT_TLS=false opts out: a bearer token over plain HTTP).
    alert_tls: bool = True
    # Where Prometheus runs (RAMPART_MONITORING_NAMESPACE): a HardenedService's
    # NetworkPolicy lets only that namespace reach the sidecar's admin port
    # unless the resource names its own metricsFrom peers. Empty: nobody.
    monitoring_namespace: str = "monitoring"
    # The admission webhook server (HTTPS): port (0 turns it off) and host.
    webhook_port: int = 9443
    webhook_host: str = "0.0.0.0"
    # Set when the operator runs outside the cluster (the chart's outOfCluster
    # mode): the https://HOST:PORT the webhook configurations call instead of
    # the Service. The serving certificate then names HOST too.
    webhook_url: str = ""
    # The operator's own namespace: where the webhook Service and certificate
    # Secret live, and never injected.
    namespace: str = "rampart"
    # The Service the API server calls, the Mutating- and ValidatingWebhookConfiguration
    # (both carry this name) whose caBundle the operator keeps, and the Secret
    # holding the CA and serving certificate it generates and rotates.
    webhook_service: str = "rampart-webhook"
    webhook_configuration: str = "rampart"
    webhook_secret: str = "rampart-webhook-tls"  # noqa: S105 - the Secret's name
    # Set when cert-manager provides the certificate (tls.crt, tls.key mounted
    # here): the operator then only reloads it and leaves caBundle to cert-manager.
    webhook_cert_dir: str = ""
    # Seconds between checks whether the certificate is due for renewal (or
    # another replica renewed it).
    webhook_check_interval: float = 600.0

    @property
    def native_sidecar(self) -> bool:
        return self.sidecar_mode != "container"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorSettings:  # noqa: C901 - one branch per variable, each with its own error
        """Raises SettingsError, naming the variable and what is wrong with it."""
        env = dict(os.environ if env is None else env)
        defaults = cls()
        mode = env.get("RAMPART_SIDECAR_MODE", defaults.sidecar_mode)
        if mode not in ("auto", "native", "container"):
            raise SettingsError(f"RAMPART_SIDECAR_MODE: {mode!r} is not auto, native or container")
        log_level = env.get("RAMPART_LOG_LEVEL", defaults.log_level).lower()
        if log_level not in LOG_LEVELS:
            raise SettingsError(
                f"RAMPART_LOG_LEVEL: {log_level!r} is not {', '.join(LOG_LEVELS[:-1])} or error"
            )
        namespaces = tuple(n for n in env.get("RAMPART_NAMESPACES", "").split(",") if n.strip())
        analysis_urls = tuple(
            url.strip().rstrip("/")
            for url in env.get("RAMPART_ANALYSIS_URLS", "").split(",")
            if url.strip()
        )
        for url in analysis_urls:
            if not url.startswith(("http://", "https://")):
                raise SettingsError(f"RAMPART_ANALYSIS_URLS: {url!r} is not an http(s) URL")
        pod_security = env.get("RAMPART_POD_SECURITY", defaults.pod_security)
        if pod_security not in LEVELS:
            raise SettingsError(
                f"RAMPART_POD_SECURITY: {pod_security!r} is not {', '.join(LEVELS[:-1])} "
                f"or {LEVELS[-1]}"
            )
        accounts = env.get("RAMPART_SERVICE_ACCOUNTS", "")
        service_accounts = tuple(a.strip() for a in accounts.split(",") if a.strip())
        token = env.get("RAMPART_ALERT_TOKEN", "")
        if not token and env.get("RAMPART_ALERT_TOKEN_FILE"):
            try:
                token = Path(env["RAMPART_ALERT_TOKEN_FILE"]).read_text().strip()
            except OSError as error:
                raise SettingsError(
                    f"RAMPART_ALERT_TOKEN_FILE: cannot read {env['RAMPART_ALERT_TOKEN_FILE']}: "
                    f"{error.strerror}"
                ) from None

        def number(name: str, default: float, kind: type[int] | type[float] = float) -> Any:
            text = env.get(name)
            if text is None:
                return kind(default)
            try:
                value = kind(text)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise SettingsError(f"{name}: {text!r} is not {what}") from None
            if value < 0:
                raise SettingsError(f"{name}: {text!r} is negative")
            return value

        def flag(name: str, default: bool) -> bool:
            text = env.get(name)
            if text is None:
                return default
            if text.strip().lower() in ("true", "1", "yes"):
                return True
            if text.strip().lower() in ("false", "0", "no"):
                return False
            raise SettingsError(f"{name}: {text!r} is not true or false")

        return cls(
            sidecar_image=env.get("RAMPART_SIDECAR_IMAGE", defaults.sidecar_image),
            sidecar_mode=mode,  # type: ignore[arg-type]
            log_level=log_level,
            drift_interval=number("RAMPART_DRIFT_INTERVAL", defaults.drift_interval),
            namespaces=namespaces,
            metrics_port=number("RAMPART_METRICS_PORT", defaults.metrics_port, int),
            rollout_tick=number("RAMPART_ROLLOUT_TICK", defaults.rollout_tick),
            alert_port=number("RAMPART_ALERT_PORT", defaults.alert_port, int),
            alert_host=env.get("RAMPART_ALERT_HOST", defaults.alert_host),
            alert_token=token,
            alertmanager_url=env.get("RAMPART_ALERTMANAGER_URL", ""),
            analysis_urls=analysis_urls,
            pod_security=pod_security,
            service_accounts=service_accounts,
            alert_poll_interval=number("RAMPART_ALERT_POLL_INTERVAL", defaults.alert_poll_interval),
            alert_tls=flag("RAMPART_ALERT_TLS", defaults.alert_tls),
            monitoring_namespace=env.get(
                "RAMPART_MONITORING_NAMESPACE", defaults.monitoring_namespace
            ).strip(),
            webhook_port=number("RAMPART_WEBHOOK_PORT", defaults.webhook_port, int),
            webhook_host=env.get("RAMPART_WEBHOOK_HOST", defaults.webhook_host),
            webhook_url=env.get("RAMPART_WEBHOOK_URL", ""),
            namespace=env.get("RAMPART_NAMESPACE")
            or env.get("POD_NAMESPACE")
            or defaults.namespace,
            webhook_service=env.get("RAMPART_WEBHOOK_SERVICE", defaults.webhook_service),
            webhook_configuration=env.get(
                "RAMPART_WEBHOOK_CONFIGURATION", defaults.webhook_configuration
            ),
            webhook_secret=env.get("RAMPART_WEBHOOK_SECRET", defaults.webhook_secret),
            webhook_cert_dir=env.get("RAMPART_WEBHOOK_CERT_DIR", ""),
            webhook_check_interval=number(
                "RAMPART_WEBHOOK_CHECK_INTERVAL", defaults.webhook_check_interval
            ),
        )


def mode_for_server(version: dict[str, str]) -> SidecarMode:
    """Native sidecars are on by default from Kubernetes 1.29 (beta) and GA in 1.33.

    >>> mode_for_server({"major": "1", "minor": "29+"})
    'native'
    >>> mode_for_server({"major": "1", "minor": "28"})
    'container'
    """
    try:
        major = int(version.get("major", "0").rstrip("+"))
        minor = int(version.get("minor", "0").rstrip("+"))
    except ValueError:
        return "container"  # an unknown server gets the mode every version supports
    return "native" if (major, minor) >= (1, 29) else "container"
