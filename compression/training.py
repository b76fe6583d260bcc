"""Plain supervised training of a classifier, with progress and cancellation.

Used to fine-tune a compressed model on the uploaded data, and by tests and benchmarks to
train their own small models from packaged data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from compression.data import Dataset
from compression.progress import Monitor


def fit(
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int,
    lr: float = 1e-2,
    batch_size: int = 64,
    seed: int = 0,
    monitor: Monitor | None = None,
    parameters: Iterable[torch.Tensor] | None = None,
    after_backward: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> nn.Module:
    """Train with Adam on shuffled mini-batches (deterministic for a seed); returns eval mode.

    ``parameters`` (default: the model's) are what Adam updates; ``after_backward`` and
    ``after_step`` let constrained fine-tuning move gradients and restore constraints.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters() if parameters is None else parameters, lr=lr)
    batches_per_epoch = -(-data.num_samples // batch_size)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(data.num_samples, generator=generator)
        for index, start in enumerate(range(0, data.num_samples, batch_size)):
            chosen = order[start : start + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(data.samples(chosen)), data.y[chosen]).backward()
            if after_backward is not None:
                after_backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            if monitor is not None:
                monitor.report((epoch + (index + 1) / batches_per_epoch) / epochs)
    return model.eval()
