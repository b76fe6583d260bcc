"""CPU latency you can trust: before and after timed interleaved, with their spread.

Timing the original model first and the compressed one minutes later lets anything else the
machine does in between decide the ratio (0.08x to 81x for the same pruning on a busy
machine). Alternating the two models run by run exposes both to the same conditions; the
report gives median and p10/p90 of each, the thread count, and a ratio only when the two
spreads do not overlap (otherwise it says the difference is within the noise).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from compression.runtime import CPU, Runtime


@dataclass(frozen=True)
class LatencySpread:
    median_ms: float
    p10_ms: float
    p90_ms: float


@dataclass(frozen=True)
class LatencyComparison:
    before: LatencySpread
    after: LatencySpread
    reduction: float | None
    """median before / median after; None when the p10..p90 spreads overlap."""
    verdict: str
    threads: int
    batch: int
    repeats: int
    warmup: int
    device: str = "cpu"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def spread(timings_ms: list[float]) -> LatencySpread:
    """Median and the 10th/90th percentiles (linear interpolation between ranks)."""
    if len(timings_ms) == 1:
        only = timings_ms[0]
        return LatencySpread(only, only, only)
    deciles = statistics.quantiles(timings_ms, n=10, method="inclusive")
    return LatencySpread(statistics.median(timings_ms), deciles[0], deciles[-1])


def _time_once(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000.0


def compare_runs(
    before: Callable[[], object],
    after: Callable[[], object],
    *,
    threads: int,
    batch: int,
    repeats: int = 30,
    warmup: int = 3,
    progress: Callable[[float], None] | None = None,
) -> LatencyComparison:
    """Time two ways of running one batch alternately (which goes first alternates too);
    ``threads`` and ``batch`` are recorded as given; ``progress`` hears the fraction done after
    each pair. Shared by torch (``compare_latency``) and onnxruntime (``compression.deploy``)."""
    for _ in range(warmup):
        before()
        after()
    times: dict[str, list[float]] = {"before": [], "after": []}
    runs = {"before": before, "after": after}
    for index in range(repeats):
        order = ("before", "after") if index % 2 == 0 else ("after", "before")
        for name in order:
            times[name].append(_time_once(runs[name]))
        if progress is not None:
            progress((index + 1) / repeats)
    first, second = spread(times["before"]), spread(times["after"])
    overlap = first.p10_ms <= second.p90_ms and second.p10_ms <= first.p90_ms
    if overlap:
        reduction, verdict = None, "spreads overlap: no latency difference beyond the noise"
    else:
        reduction = first.median_ms / second.median_ms
        verdict = "faster" if reduction > 1 else "slower"
    return LatencyComparison(first, second, reduction, verdict, threads, batch, repeats, warmup)


GPU_WARMUP = 10
"""Runs before timing on a GPU: kernel selection and the caching allocator settle there."""


@torch.inference_mode()
def compare_latency(
    before: nn.Module,
    after: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 3,
    progress: Callable[[float], None] | None = None,
    runtime: Runtime = CPU,
) -> LatencyComparison:
    """Time ``before`` and ``after`` alternately (which goes first alternates too) on
    ``runtime.device``, where both models must already be; ``progress`` hears the fraction
    done after each pair (big models take seconds a run). On a GPU every run waits for its
    kernels (synchronized) and timing starts after at least GPU_WARMUP runs of each."""
    before.eval()
    after.eval()
    x = torch.rand((batch, *input_shape), generator=torch.Generator().manual_seed(0))
    x = runtime.put(x)

    def timed(model: nn.Module) -> Callable[[], object]:
        def run() -> None:
            with runtime.autocast():
                model(x)
            runtime.synchronize()

        return run

    comparison = compare_runs(
        timed(before), timed(after), threads=torch.get_num_threads(), batch=batch,
        repeats=repeats, warmup=max(warmup, GPU_WARMUP) if runtime.is_cuda else warmup,
        progress=progress,
    )  # fmt: skip
    return replace(comparison, device=str(runtime.device))


@torch.inference_mode()
def median_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch: int = 1,
    repeats: int = 30,
    warmup: int = 3,
) -> float:
    """One model's median latency (for a single model; compare two with compare_latency)."""
    model.eval()
    x = torch.rand((batch, *input_shape))
    for _ in range(warmup):
        model(x)
    return statistics.median(_time_once(lambda: model(x)) for _ in range(repeats))
