"""JSON-lines logging, with the headers that carry secrets never written out."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

__all__ = ["ALWAYS_SECRET", "AccessLog", "JsonFormatter", "configure_logging", "redact_headers"]

ALWAYS_SECRET = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
REDACTED = "[redacted]"

# Attributes every LogRecord has; anything else was passed in ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact_headers(headers: Mapping[str, str], secret: Iterable[str] = ()) -> dict[str, str]:
    """A copy of ``headers`` that is safe to log."""
    hidden = ALWAYS_SECRET | {name.lower() for name in secret}
    return {k: (REDACTED if k.lower() in hidden else v) for k, v in headers.items()}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class AccessLog:
    """The access log's one line per request, written beside the logging module, not through it.

    Through ``logging`` and ``JsonFormatter`` the line roughly doubled the
    CPU a request takes (docs/benchmarks.md): a LogRecord, a walk of the
    caller's frames, every record attribute looked at, a new JSON encoder and
    a flush per line. This builds the same line (the keys, their order and
    the text ``json.dumps`` gives) from a dict, and writes what one loop
    iteration produced with one write. Where ``configure_logging`` has not named a
    stream (the sidecar embedded in another program), lines go through
    ``logging`` as before.
    """

    def __init__(self) -> None:
        self._logger = logging.getLogger("rampart.access")
        self._pending: list[str] = []
        self._second = -1
        self._stamp = ""

    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, fields: dict[str, object], loop: asyncio.AbstractEventLoop | None) -> None:
        """One request's line; written once the loop's current iteration is done."""
        stream = _access_stream
        if stream is None:
            self._logger.info("request", extra=fields)
            return
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry: dict[str, object] = {
            "ts": f"{self._stamp}.{int((now - second) * 1000):03d}Z",
            "level": "info",
            "logger": "rampart.access",
            "msg": "request",
        }
        entry.update(fields)
        if not self._pending and loop is not None:
            loop.call_soon(self.flush)
        self._pending.append(json_line(entry))
        if loop is None:
            self.flush()

    def flush(self) -> None:
        stream = _access_stream
        if self._pending and stream is not None:
            self._pending.append("")  # the last line's newline
            try:
                stream.write("\n".join(self._pending))
                stream.flush()
            except (OSError, ValueError):
                pass  # stdout gone (a closed pipe): lose the lines, as logging does, not requests
        self._pending.clear()


def json_line(entry: Mapping[str, object]) -> str:
    """``json.dumps(entry, default=str)`` for a flat dict, at a fraction of its cost.

    json.dumps with any option builds a new encoder on every call, which was
    most of an access line's cost. The values here are flat: strings, numbers,
    booleans, None, and anything else as its ``str``, as ``default=str`` does.
    """
    parts = []
    for key, value in entry.items():
        if isinstance(value, str):
            text = _quote(value)
        elif value is None:
            text = "null"
        elif value is True or value is False:
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = int.__repr__(value)
        elif isinstance(value, float):
            text = float.__repr__(value) if math.isfinite(value) else json.dumps(value)
        else:
            text = _quote(str(value))
        parts.append(f"{_quote(key)}: {text}")
    return "{" + ", ".join(parts) + "}"


_quote = json.encoder.encode_basestring_ascii
# Where AccessLog writes: the stream configure_logging gave the root logger.
_access_stream: TextIO | None = None


def configure_logging(level: str) -> None:
    global _access_stream
    _access_stream = sys.stdout
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would repeat ours in another format.
    logging.getLogger("aiohttp.access").disabled = True
