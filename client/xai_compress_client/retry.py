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
# Failures that may pass: not e.g. an unsupported URL scheme, which fails the same way again.
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; ``Retry-After`` wins when the server sends it.

    ``attempt`` counts the attempts that failed before this decision, from 0; the answer is
    the seconds to wait before trying again, or None to give up.
    """

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 60.0

    def after_error(self, attempt: int, error: httpx.TransportError) -> float | None:
        if attempt >= self.max_retries or not isinstance(error, TRANSIENT_ERRORS):
            return None
        return self._backoff(attempt)

    def after_response(self, attempt: int, response: httpx.Response) -> float | None:
        if attempt >= self.max_retries or response.status_code not in RETRY_STATUSES:
            return None
        advised = retry_after_seconds(response.headers.get("Retry-After"))
        return self._backoff(attempt) if advised is None else min(advised, self.max_delay)

    def _backoff(self, attempt: int) -> float:
        capped = min(self.max_delay, self.base_delay * 2.0**attempt)
        return capped * random.uniform(0.5, 1.0)  # jitter spreads out clients that failed together


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
