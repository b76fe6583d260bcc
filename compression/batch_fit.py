"""Batch sizes that fit the device: start from the requested size, halve on out-of-memory.
On the CPU, start no larger than the host's activation budget allows.

A pass over the data (attribution, Taylor scores, evaluation) is restarted from its first
batch with half the batch size when CUDA runs out of memory: every batch of a pass has the
same size, so memory runs out on the first one and a restart loses almost nothing, and the
sums a pass accumulates never hold half of a failed batch. A fine-tuning step is split into
micro-batches instead (see ``compression.training``). Each halving is said in the job's
events, and the size that fitted is kept on the runtime for the rest of the job.

Per-sample aggregates (DeepLIFT relevance, accuracy, Taylor channel scores) do not depend on
the batch size; Taylor's per-weight score |w g| takes g per batch by definition, so a halved
batch changes it a little, as choosing a smaller batch in the spec would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from compression.progress import Monitor
from compression.runtime import Runtime

T = TypeVar("T")

OUT_OF_MEMORY = torch.cuda.OutOfMemoryError
"""What a device raises when a batch does not fit (the class exists on CPU builds too)."""


def with_fitting_batch(
    work: Callable[[int], T],
    requested: int,
    what: str,
    runtime: Runtime,
    monitor: Monitor | None = None,
    sample_bytes: int = 0,
) -> T:
    """Run ``work(batch_size)``, halving the batch size after each out-of-memory error
    until it succeeds; at batch size 1 the error is raised. ``what`` names the kind of work
    (``attribution``, ``evaluation``, ...) in events and in ``runtime.batch_limits``.

    On the CPU, where running out of memory raises nothing, a pass whose samples take
    ``sample_bytes`` each (``compression.activation_size``) starts at a batch that keeps
    within ``runtime.host_batch_bytes``, and says so in the same event."""
    if requested < 1:
        raise ValueError(f"batch size must be at least 1, got {requested}")
    size = min(requested, runtime.batch_limits.get(what, requested))
    if not runtime.is_cuda and sample_bytes > 0:
        fits = max(1, runtime.host_batch_bytes // sample_bytes)
        if fits < size:
            if monitor is not None:
                monitor.notify(
                    "batch_size_reduced",
                    {"work": what, "from": size, "to": fits, "requested": requested,
                     "device": str(runtime.device),
                     "reason": f"host memory: about {sample_bytes / 2**20:.0f} MiB per "
                               f"sample, {runtime.host_batch_bytes / 2**20:.0f} MiB per batch"},
                )  # fmt: skip
            size = fits
    while True:
        try:
            return work(size)
        except OUT_OF_MEMORY as exc:
            if size == 1:
                raise
            runtime.release()
            smaller = size // 2
            runtime.batch_limits[what] = smaller
            if monitor is not None:
                monitor.notify(
                    "batch_size_reduced",
                    {"work": what, "from": size, "to": smaller, "requested": requested,
                     "device": str(runtime.device), "reason": _first_line(exc)},
                )  # fmt: skip
            size = smaller


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
