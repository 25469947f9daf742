"""Rampart's sidecar: a resilience proxy in front of one application container."""

from rampart_common.sidecar_settings import SidecarSettings, load_settings

from .errors import ConfigError, RampartError

__all__ = ["ConfigError", "RampartError", "SidecarSettings", "load_settings"]
__version__ = "0.1.0"
