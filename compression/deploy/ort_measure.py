"""Accuracy and latency of an ONNX model where people run it: in onnxruntime on the CPU.

The torch figures of a job say how the engine's model behaves; a user deploys the ONNX file,
whose speed depends on onnxruntime's kernels and graph optimizations (an int8 model can be
several times faster there and slower in torch). Sessions get an explicit thread count so a
measurement never depends on whatever onnxruntime picks for the machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime

from compression.data import Dataset
from compression.evaluate.latency import LatencyComparison, compare_runs
from compression.progress import Monitor, tracked_batches


def session(model: str | Path | bytes, threads: int) -> onnxruntime.InferenceSession:
    """A CPU session with ``threads`` intra-op threads (inter-op 1), quiet logging."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def all_threads() -> int:
    """The CPUs this process may use (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def ort_accuracy(
    model: onnxruntime.InferenceSession,
    data: Dataset,
    batch_size: int = 256,
    monitor: Monitor | None = None,
) -> float:
    """Top-1 accuracy of the session's model on ``data``."""
    name = model.get_inputs()[0].name
    correct = 0
    for x, y in tracked_batches(data, batch_size, monitor):
        (logits,) = model.run(None, {name: x.numpy()})
        correct += int((logits.argmax(axis=1) == y.numpy()).sum())
    return correct / data.num_samples


def compare_ort_latency(
    before: onnxruntime.InferenceSession,
    after: onnxruntime.InferenceSession,
    input_shape: tuple[int, ...],
    batch: int,
    threads: int,
    repeats: int = 30,
    warmup: int = 3,
    progress: Callable[[float], None] | None = None,
) -> LatencyComparison:
    """Two sessions timed alternately on one fixed random batch (``compare_runs``, which
    reports ``progress`` after each pair)."""
    x = np.random.default_rng(0).random((batch, *input_shape), dtype=np.float32)
    feeds = [{model.get_inputs()[0].name: x} for model in (before, after)]
    return compare_runs(
        lambda: before.run(None, feeds[0]), lambda: after.run(None, feeds[1]),
        threads=threads, batch=batch, repeats=repeats, warmup=warmup, progress=progress,
    )  # fmt: skip
