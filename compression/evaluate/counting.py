"""Parameter and multiply-accumulate counts.

MACs count the conv and linear layers for one sample (those dominate; BatchNorm, pooling
and activations are ignored), as most pruning papers report them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compression.layers import WEIGHTED_TYPES


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(all parameters, nonzero parameters)."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return total, nonzero


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of conv and linear layers for a single sample."""
    macs = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        per_output = module.weight[0].numel()  # in_channels/groups * kernel, or in_features
        macs += math.prod(output.shape[1:]) * per_output

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, WEIGHTED_TYPES)
    ]
    try:
        with torch.no_grad():
            device = next(model.parameters(), torch.empty(0)).device  # where it was placed
            model.eval()(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return macs
