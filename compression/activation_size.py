"""How much memory one sample's activations take: the basis of batch sizes that fit the host.

On the CPU nothing raises when memory runs out (the kernel kills the process), so a batch
size cannot be found by halving on an error as on a GPU (``compression.batch_fit``). Instead a
pass sizes its batches beforehand from one sample's forward pass: the bytes of every leaf
module's output. A 224x224 VGG-11-BN sample measured 95 MB of outputs, and a DeepLIFT batch of
8 took 1.6 GB beyond the model (about 2x the outputs: the graph saved for the backward, the
reference pass and the multipliers); an evaluation batch of 16 took 0.6 GB (about 0.4x, as
only a few outputs are alive at once without autograd).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from compression.data import Dataset
from compression.runtime import Runtime

BACKWARD_FACTOR = 2.5
"""A pass with a backward (DeepLIFT, Taylor) holds about this many times a sample's leaf
outputs per sample."""
FORWARD_FACTOR = 1.0
"""A forward pass without autograd holds at most this many times (an upper bound: 0.4x was
measured on VGG, but a concatenating network keeps more of its outputs alive)."""


def leaf_output_bytes(model: nn.Module, sample: Tensor) -> int:
    """Bytes of the outputs of every leaf module of ``model`` for ``sample`` (one sample,
    batch dimension included), from a forward pass without autograd."""
    total = 0

    def count(_module: nn.Module, _inputs: tuple, output: object) -> None:
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()

    leaves = [module for module in model.modules() if next(module.children(), None) is None]
    handles = [leaf.register_forward_hook(count) for leaf in leaves]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    return total


def sample_bytes(model: nn.Module, data: Dataset, factor: float, runtime: Runtime) -> int:
    """Estimated memory per sample of a pass of ``model`` over ``data``: ``factor`` times the
    first sample's leaf outputs; 0 (no estimate needed) on a GPU or for empty data."""
    if runtime.is_cuda or data.num_samples == 0:
        return 0
    return int(factor * leaf_output_bytes(model, runtime.put(data.samples(slice(0, 1)))))
