"""Plain supervised training of a classifier, with progress and cancellation.

Used to fine-tune a compressed model on the uploaded data, and by tests and benchmarks to
train their own small models from packaged data. Training runs on the runtime's device; a
batch that does not fit is split into micro-batches whose gradients add up to the batch's
(the optimizer still steps once per requested batch), halving the micro-batch on each
out-of-memory error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from compression.batch_fit import with_fitting_batch
from compression.data import Dataset
from compression.progress import Monitor
from compression.runtime import CPU, Runtime


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
    runtime: Runtime = CPU,
) -> nn.Module:
    """Train with Adam on shuffled mini-batches (deterministic for a seed); returns eval mode.

    ``parameters`` (default: the model's) are what Adam updates; ``after_backward`` and
    ``after_step`` let constrained fine-tuning move gradients and restore constraints.
    ``model`` is moved to ``runtime.device`` (``parameters`` must already be there).
    """
    runtime.place(model)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters() if parameters is None else parameters, lr=lr)
    batches_per_epoch = -(-data.num_samples // batch_size)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(data.num_samples, generator=generator)
        for index, start in enumerate(range(0, data.num_samples, batch_size)):
            chosen = order[start : start + batch_size]

            def gradients(micro: int, chosen: torch.Tensor = chosen) -> None:
                optimizer.zero_grad()
                _accumulate_gradients(model, data, chosen, micro, runtime)

            with_fitting_batch(gradients, batch_size, "finetuning", runtime, monitor)
            if after_backward is not None:
                after_backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            if monitor is not None:
                monitor.report((epoch + (index + 1) / batches_per_epoch) / epochs)
    return model.eval()


def _accumulate_gradients(
    model: nn.Module, data: Dataset, chosen: torch.Tensor, micro: int, runtime: Runtime
) -> None:
    """Gradients of the mean cross-entropy over ``chosen``, in micro-batches of ``micro``."""
    if micro >= len(chosen):  # the whole batch at once: exactly the plain training step
        with runtime.autocast():
            logits = model(runtime.put(data.samples(chosen)))
        F.cross_entropy(logits.float(), runtime.put(data.y[chosen])).backward()
        return
    for part in torch.split(chosen, micro):
        with runtime.autocast():
            logits = model(runtime.put(data.samples(part)))
        loss = F.cross_entropy(logits.float(), runtime.put(data.y[part]), reduction="sum")
        (loss / len(chosen)).backward()
