"""CPU latency as the median of repeated timed runs (robust to the odd slow run)."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


@torch.inference_mode()
def median_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 3,
) -> float:
    model.eval()
    x = torch.rand((batch, *input_shape))
    for _ in range(warmup):
        model(x)
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        timings.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(timings)
