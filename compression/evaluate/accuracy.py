"""Top-1 accuracy on a labelled dataset."""

from __future__ import annotations

import torch
from torch import nn

from compression.data import Dataset
from compression.progress import Monitor


@torch.no_grad()
def top1_accuracy(
    model: nn.Module, data: Dataset, batch_size: int = 256, monitor: Monitor | None = None
) -> float:
    model.eval()
    correct = 0
    batches = data.batches(batch_size)
    total = -(-data.num_samples // batch_size)
    for x, y in monitor.track(batches, total) if monitor else batches:
        correct += int((model(x).argmax(dim=1) == y).sum())
    return correct / data.num_samples
