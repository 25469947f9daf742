"""What the tour says, live: rich's styling in a terminal, plain lines elsewhere."""

from __future__ import annotations

import time

from rich.console import Console


class Narrator:
    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        # Not a terminal (a pipe, a CI log): rich writes plain text, no colours or cursor moves.
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.verbose = verbose
        self.started = time.monotonic()

    def _clock(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def stage(self, title: str) -> None:
        if self.console.is_terminal:
            self.console.rule(f"[bold]{title}")
        else:
            self.console.print(f"\n== {title}")

    def say(self, text: str) -> None:
        self.console.print(f"{self._clock()} {text}", markup=False)

    def detail(self, text: str) -> None:
        if self.console.is_terminal:
            self.console.print(f"[dim]{self._clock()} {text}[/dim]", markup=True)
        else:
            self.console.print(f"{self._clock()}   {text}", markup=False)
