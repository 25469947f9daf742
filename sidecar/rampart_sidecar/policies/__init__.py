"""Resilience policies, one module each, applied by the proxy in this order:

1. ``ratelimit``    token bucket per client key          → 429 + Retry-After
2. ``concurrency``  in-flight limit with a bounded queue → 503
3. ``timeout``      the route's deadline, retries included → 504
4. ``breaker``      checked before every attempt           → 503 + Retry-After
5. ``retry``        per-try timeout, jittered backoff, a retry budget

Cheap rejections come first so that a flood costs the least work, and the
breaker sits inside the retry loop so that it counts every attempt the
upstream actually saw.
"""

from .breaker import BreakerState, CircuitBreaker, Permit
from .concurrency import ConcurrencyLimiter
from .ratelimit import RateLimiter
from .retry import RetryBudget, RetryPolicy
from .timeout import Route, RouteTable

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "ConcurrencyLimiter",
    "Permit",
    "RateLimiter",
    "RetryBudget",
    "RetryPolicy",
    "Route",
    "RouteTable",
]
