"""When to send a request again, and how long to wait first.

Retried: dropped connections and timeouts, 429, and the 5xx an overloaded server or a proxy
in front of it answers with. Any other 4xx means the request itself is wrong, so sending it
again cannot help. Retrying a POST is safe for jobs (the Idempotency-Key is reused) and for
uploads costs at most an orphaned pending upload.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; ``Retry-After`` wins when the server sends it."""

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 60.0

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float | None:
        """Seconds to wait after failed attempt number ``attempt`` (from 0), or None to give up.

        ``response`` is None when the attempt got no response at all (a transport error).
        """
        if attempt >= self.max_retries:
            return None
        if response is not None:
            if response.status_code not in RETRY_STATUSES:
                return None
            advised = retry_after_seconds(response.headers.get("Retry-After"))
            if advised is not None:
                return min(advised, self.max_delay)
        backoff = min(self.max_delay, self.base_delay * 2**attempt)
        return backoff * random.uniform(0.5, 1.0)  # jitter spreads out clients that failed together


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP-date (RFC 9110); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" dates parse naive; HTTP dates are UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
