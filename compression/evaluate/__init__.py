"""Honest metrics: accuracy, size, compute, latency, and a per-layer table."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from compression.data import Dataset
from compression.evaluate.accuracy import top1_accuracy
from compression.evaluate.counting import count_macs, count_parameters
from compression.evaluate.latency import LatencyComparison, compare_latency, median_latency_ms
from compression.evaluate.layer_table import LayerRow, layer_table, snapshot
from compression.progress import Monitor
from compression.runtime import CPU, Runtime
from jobspec import EvaluationSettings


@dataclass(frozen=True)
class ModelMetrics:
    accuracy: float | None
    parameters: int
    nonzero_parameters: int
    macs: int
    fp32_bytes: int
    latency_ms: float | None
    """None until timed; the pipeline times before and after together (compare_latency)."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def measure(
    model: nn.Module,
    input_shape: tuple[int, ...],
    data: Dataset | None,
    settings: EvaluationSettings,
    monitor: Monitor | None = None,
    latency: bool = True,
    runtime: Runtime = CPU,
) -> ModelMetrics:
    """Every whole-model metric of the report, for one model (``latency=False`` leaves the
    timing to a before/after comparison); accuracy is computed on ``runtime.device``."""
    total, nonzero = count_parameters(model)
    accuracy = top1_accuracy(model, data, settings.batch_size, monitor, runtime) if data else None
    return ModelMetrics(
        accuracy=accuracy,
        parameters=total,
        nonzero_parameters=nonzero,
        macs=count_macs(model, input_shape),
        fp32_bytes=4 * total,
        latency_ms=median_latency_ms(
            model, input_shape, settings.latency_batch, settings.latency_repeats
        )
        if latency
        else None,
    )


__all__ = [
    "LatencyComparison",
    "LayerRow",
    "ModelMetrics",
    "compare_latency",
    "count_macs",
    "count_parameters",
    "layer_table",
    "measure",
    "median_latency_ms",
    "snapshot",
    "top1_accuracy",
]
