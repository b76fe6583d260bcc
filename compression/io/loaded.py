"""The in-memory result of model intake: a module plus what the engine must know about it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LoadedModel:
    """A model ready for the engine.

    ``input_shape`` excludes the batch dimension: (C, H, W), (C, L) or (F,).
    ``source`` names where it came from ("pt2", "onnx", "zoo:resnet20") for reports.
    """

    module: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    source: str

    def example_input(self, batch: int = 2) -> torch.Tensor:
        """A deterministic input of the right shape (batch 2 keeps the batch dim dynamic)."""
        generator = torch.Generator().manual_seed(0)
        return torch.rand((batch, *self.input_shape), generator=generator)
