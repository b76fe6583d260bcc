"""Polling until something settles: shared by waiting for uploads and for jobs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

from xai_compress_client.errors import WaitTimeout

T = TypeVar("T")


def poll_until(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float | None,
    interval: float,
    what: str,
    on_update: Callable[[T], None] = lambda _: None,
) -> T:
    """Call ``fetch`` until ``done`` holds; WaitTimeout once ``timeout`` seconds have passed."""
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    while True:
        value = fetch()
        on_update(value)
        if done(value):
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"{what} has not finished after {timeout:g} s")
        time.sleep(min(interval, remaining))
