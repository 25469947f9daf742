"""Requests in a background thread, one after another, until stopped."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request


class Traffic:
    """GETs ``base`` + each of ``paths`` in turn, ``pause`` seconds apart, until the
    ``with`` block ends; ``sent`` counts them (failures included)."""

    def __init__(self, base: str, paths: list[str] | None = None, pause: float = 0.01) -> None:
        self.base, self.paths, self.pause = base, paths or [""], pause
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.sent < 100_000:
            url = self.base + self.paths[self.sent % len(self.paths)]
            try:
                with urllib.request.urlopen(url, timeout=3) as answer:
                    answer.read()
            except (urllib.error.URLError, OSError):
                pass  # a 5xx, a refused connection: what the test provokes
            self.sent += 1
            self._stop.wait(self.pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
