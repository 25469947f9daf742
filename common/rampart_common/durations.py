"""Durations as the HardenedService API writes them: ``250ms``, ``30s``, ``5m``, ``1h30m``.

The same grammar as Kubernetes and Go's ``time.ParseDuration`` (without the
micro and nano units, which no timeout here needs), so a value copied from a
Flagger or Linkerd manifest means the same thing here.

>>> parse_duration("1m30s")
90.0
>>> format_duration(0.25)
'250ms'
"""

from __future__ import annotations

import re

__all__ = ["DURATION_OR_ZERO_PATTERN", "DURATION_PATTERN", "format_duration", "parse_duration"]

# The grammar as the CRD's schema checks it: the HardenedService API's own
# durations need a unit; the sidecar's settings also take a bare 0 (off).
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
DURATION_OR_ZERO_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+)$"

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ``ValueError`` naming the accepted form."""
    value = text.strip()
    if value == "0":
        return 0.0
    if not _WHOLE.fullmatch(value):
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit, e.g. 250ms, 30s, 5m, 1h30m"
        )
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(value))


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of ``seconds`` in the API's grammar."""
    if seconds == 0:
        return "0s"
    milliseconds = round(seconds * 1000)
    for unit, factor in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds % factor == 0:
            return f"{milliseconds // factor}{unit}"
    return f"{milliseconds}ms"
