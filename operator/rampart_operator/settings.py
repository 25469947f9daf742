"""The operator's own settings, from its environment (the Helm chart sets them).

Every field has a default and says its unit and why it exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from . import __version__

__all__ = ["OperatorSettings"]

SidecarMode = Literal["native", "container"]


@dataclass(frozen=True)
class OperatorSettings:
    # The sidecar image; pinned to the operator's own version so both move together.
    sidecar_image: str = f"ghcr.io/rampart-dev/rampart:{__version__}"
    # "native": an init container with restartPolicy Always (Kubernetes >= 1.29),
    # started before and stopped after the app. "container": a plain container.
    sidecar_mode: SidecarMode = "native"
    # Seconds between drift checks: a child deleted or edited by hand is restored
    # at most this long after (deletions are seen sooner, through watch events).
    drift_interval: float = 30.0
    # Namespaces to watch; empty means all.
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    # Port of the operator's /metrics; 0 turns it off.
    metrics_port: int = 8080

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorSettings:
        env = dict(os.environ if env is None else env)
        defaults = cls()
        mode = env.get("RAMPART_SIDECAR_MODE", defaults.sidecar_mode)
        if mode not in ("native", "container"):
            raise ValueError(f"RAMPART_SIDECAR_MODE: {mode!r} is not native or container")
        namespaces = tuple(n for n in env.get("RAMPART_NAMESPACES", "").split(",") if n.strip())
        return cls(
            sidecar_image=env.get("RAMPART_SIDECAR_IMAGE", defaults.sidecar_image),
            sidecar_mode=mode,  # type: ignore[arg-type]
            drift_interval=float(env.get("RAMPART_DRIFT_INTERVAL", defaults.drift_interval)),
            namespaces=namespaces,
            metrics_port=int(env.get("RAMPART_METRICS_PORT", defaults.metrics_port)),
        )
