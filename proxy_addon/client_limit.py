"""Per-client rate limits at a gateway: one token bucket per client key, bounded in number.

The key is the client address, a header's value or a verified JWT claim. Requests that lack
the key (no such header, no token) share one bucket, so leaving the header out never escapes
the limit. At most MAX_CLIENTS buckets are kept; the least recently used goes first (a full
bucket is what a forgotten client would get anyway, so forgetting is never stricter).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from meshctl.contract import CompiledClientRateLimit

MAX_CLIENTS = 10_000
ANONYMOUS = "\x00anonymous"


class ClientLimiter:
    def __init__(self, spec: CompiledClientRateLimit) -> None:
        self.spec = spec
        self.rate = spec.requests_per_second
        self.burst = float(max(spec.burst, 1))
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str | None, now: float | None = None) -> float | None:
        """None when the request may pass; else the seconds until it would (for retry-after)."""
        now = time.monotonic() if now is None else now
        key = ANONYMOUS if key is None else key
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        wait: float | None = None
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    """Whole seconds, rounded up (RFC 9110 delay-seconds), at least 1."""
    return str(max(1, math.ceil(wait_s)))


def limiter_for(current: ClientLimiter | None, spec: CompiledClientRateLimit | None) -> ClientLimiter | None:
    """Keep the buckets across reloads while the limit is the same."""
    if spec is None:
        return None
    if current is not None and current.spec == spec:
        return current
    return ClientLimiter(spec)
