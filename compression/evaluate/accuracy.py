"""Top-1 accuracy on a labelled dataset."""

from __future__ import annotations

import torch
from torch import nn

from compression.data import Dataset
from compression.progress import Monitor, tracked_batches


@torch.no_grad()
def top1_accuracy(
    model: nn.Module, data: Dataset, batch_size: int = 256, monitor: Monitor | None = None
) -> float:
    model.eval()
    correct = 0
    for x, y in tracked_batches(data, batch_size, monitor):
        correct += int((model(x).argmax(dim=1) == y).sum())
    return correct / data.num_samples
