"""The error the sidecar's settings raise, shared by both programs that read them."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """Invalid settings; ``problems`` holds one ``field.path: reason`` line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))
