"""One analysis: every check asked of the provider at once, then judged."""

from __future__ import annotations

import asyncio

from ..api.canary import Analysis
from ..canary import Verdict
from .provider import MetricsProvider, ProviderError
from .queries import checks_for, judge

__all__ = ["analyze"]


async def analyze(
    provider: MetricsProvider, namespace: str, name: str, analysis: Analysis, at: float
) -> Verdict:
    checks = checks_for(namespace, name, analysis)
    answers = await asyncio.gather(
        *(provider.query(check.query) for check in checks), return_exceptions=True
    )
    values: dict[str, float | None] = {}
    errors: list[str] = []
    for check, answer in zip(checks, answers, strict=True):
        if isinstance(answer, ProviderError):
            errors.append(f"{check.name}: {answer}")
        elif isinstance(answer, BaseException):
            raise answer
        else:
            values[check.name] = answer
    return judge(
        at, checks, values, analysis.min_requests, analysis.effective_window, tuple(errors)
    )
