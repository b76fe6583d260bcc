"""Capture layer outputs during a forward pass so their gradients can be asked for."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def capture_outputs(layers: Mapping[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict filled with each layer's output on every forward inside the block.

    The hook hands a clone downstream, so an in-place activation after the layer cannot
    overwrite the tensor we keep.
    """
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
            outputs[name] = output
            return output.clone()

        return hook

    handles = [layer.register_forward_hook(keep(name)) for name, layer in layers.items()]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
