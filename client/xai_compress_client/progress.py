"""A progress bar for waiting on a job, shown only where someone can see it.

tqdm is optional (the ``progress`` extra): without it, or when stderr is not a terminal,
waiting is silent and tqdm is never imported.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ShowProgress = Callable[[str, float, float | None], None]
"""Called with the stage, the overall fraction done, and the server's ETA in seconds."""

BAR_FORMAT = "{percentage:3.0f}%|{bar}| {desc}"


@contextmanager
def progress_bar(enabled: bool) -> Iterator[ShowProgress]:
    """Yield the function that updates the bar (a no-op when there is no bar)."""
    bar = _open_bar() if enabled and sys.stderr.isatty() else None
    if bar is None:
        yield _hidden
        return

    def show(stage: str, fraction: float, eta: float | None) -> None:
        bar.set_description_str(stage if eta is None else f"{stage}, ETA {eta:.0f}s", refresh=False)
        bar.n = round(100 * fraction, 1)
        bar.refresh()

    try:
        yield show
    finally:
        bar.close()


def _hidden(stage: str, fraction: float, eta: float | None) -> None:
    """Nothing to show."""


def _open_bar() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=100, file=sys.stderr, bar_format=BAR_FORMAT, dynamic_ncols=True)
