"""JSON-lines logging, with the headers that carry secrets never written out."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ALWAYS_SECRET", "JsonFormatter", "configure_logging", "redact_headers"]

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


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would repeat ours in another format.
    logging.getLogger("aiohttp.access").disabled = True
