"""Progress reporting and cooperative cancellation for long-running work.

Long steps call :meth:`Monitor.report` inside their loops; that single call both tells the
caller how far along the current stage is and raises :class:`Cancelled` when the caller
asked to stop, so every loop that reports progress is also a cancellation point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from compression.errors import Cancelled

if TYPE_CHECKING:
    import torch

    from compression.data import Dataset

ProgressCallback = Callable[[str, float, float], None]
"""Called with (stage, fraction of that stage done, fraction of the whole work done), both in
[0, 1]; the overall fraction never decreases."""

CancelCheck = Callable[[], bool]
"""Returns True when the caller wants the work to stop."""

EventCallback = Callable[[str, dict[str, Any]], None]
"""Called with (kind, details) when the engine decided something the caller should hear of
while the work goes on (a batch size halved to fit the GPU, ...)."""

T = TypeVar("T")


@dataclass
class Monitor:
    """Carries the caller's progress callback and cancellation check through the engine."""

    progress: ProgressCallback | None = None
    should_cancel: CancelCheck | None = None
    events: EventCallback | None = None
    stage: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    span: tuple[float, float] = (0.0, 1.0)
    stage_span: tuple[float, float] = (0.0, 1.0)
    overall: float = 0.0

    @contextmanager
    def within(self, start: float, end: float) -> Iterator[None]:
        """Map the fractions reported inside the block onto [start, end] of the enclosing span.

        Spans compose: ``within(0.5, 1.0)`` inside ``within(0.1, 0.3)`` covers [0.2, 0.3]
        overall, so a step that splits its share among sweep points, steps and stages never
        reports past the share its caller gave it (the overall fraction stays monotonic and
        reaches 1.0 only when the outermost work is done).
        """
        outer = self.span
        low, high = outer
        self.span = (low + start * (high - low), low + end * (high - low))
        try:
            yield
        finally:
            self.span = outer

    @contextmanager
    def enter(self, stage: str) -> Iterator[None]:
        """Run a block as ``stage``: report 0 and 1 around it and add up its wall time.

        The stage's fraction is measured against the span it was entered in, so work nested in
        a sub-span of the stage (an accuracy pass taking its first half) reports the stage's
        fraction, not its own."""
        outer, outer_span = self.stage, self.stage_span
        self.stage, self.stage_span = stage, self.span
        self.report(0.0)
        start = time.perf_counter()
        try:
            yield
            self.report(1.0)
        finally:
            elapsed = time.perf_counter() - start
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + elapsed
            self.stage, self.stage_span = outer, outer_span

    def report(self, fraction: float) -> None:
        """Report progress within the current stage; raise if cancellation was requested."""
        self.check()
        fraction = min(max(fraction, 0.0), 1.0)
        start, end = self.span
        position = start + fraction * (end - start)
        self.overall = max(self.overall, position)
        if self.progress is not None:
            low, high = self.stage_span
            of_stage = (position - low) / (high - low) if high > low else fraction
            self.progress(self.stage, min(max(of_stage, 0.0), 1.0), self.overall)

    def notify(self, kind: str, details: dict[str, Any]) -> None:
        """Tell the caller of a decision (the current stage is added to ``details``)."""
        if self.events is not None:
            self.events(kind, {"stage": self.stage, **details})

    def check(self) -> None:
        """Raise :class:`Cancelled` if the caller asked to stop."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"cancelled during stage {self.stage or 'start'}")

    def track(self, items: Iterable[T], total: int) -> Iterator[T]:
        """Yield items, reporting the fraction done (and checking cancellation) after each."""
        for done, item in enumerate(items, start=1):
            yield item
            self.report(done / max(total, 1))


def within(
    progress: Callable[[float], None] | None, start: float, end: float
) -> Callable[[float], None] | None:
    """``progress`` for a part of the work occupying [start, end] of it (plain callbacks'
    ``Monitor.within``; None stays None)."""
    if progress is None:
        return None
    return lambda fraction: progress(start + fraction * (end - start))


def tracked_batches(
    data: Dataset, batch_size: int, monitor: Monitor | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The dataset's batches in order, reporting progress and honouring cancellation."""
    batches = data.batches(batch_size)
    if monitor is None:
        return iter(batches)
    return monitor.track(batches, -(-data.num_samples // batch_size))
