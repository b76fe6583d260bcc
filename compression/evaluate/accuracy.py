"""Top-1 accuracy on a labelled dataset, on the runtime's device in batches that fit."""

from __future__ import annotations

import torch
from torch import nn

from compression.activation_size import FORWARD_FACTOR, sample_bytes
from compression.batch_fit import with_fitting_batch
from compression.data import Dataset
from compression.progress import Monitor, tracked_batches
from compression.runtime import CPU, Runtime


def top1_accuracy(
    model: nn.Module,
    data: Dataset,
    batch_size: int = 256,
    monitor: Monitor | None = None,
    runtime: Runtime = CPU,
) -> float:
    """The share of samples whose highest logit is their label (``model`` is moved to
    ``runtime.device``)."""
    runtime.place(model).eval()

    @torch.no_grad()
    def run(size: int) -> float:
        correct = 0
        for x, y in tracked_batches(data, size, monitor):
            with runtime.autocast():
                logits = model(runtime.put(x))
            correct += int((logits.argmax(dim=1) == runtime.put(y)).sum())
        return correct / data.num_samples

    per_sample = sample_bytes(model, data, FORWARD_FACTOR, runtime)
    return with_fitting_batch(run, batch_size, "evaluation", runtime, monitor, per_sample)
