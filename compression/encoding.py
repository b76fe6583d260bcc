"""How a compressed layer's weight is represented, besides its float tensor.

The engine keeps the float weight of every layer equal to ``dequantize()`` of its encoding,
bit for bit, so the in-memory model, the packed file and the loaded model compute the same
function. Pruning masks live beside the encodings: a pruned weight is zero whatever its code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SharedWeights:
    """Weight sharing: every weight is one of ``codebook``'s k values, picked by ``indices``."""

    codebook: torch.Tensor  # (k,) float32
    indices: torch.Tensor  # int64, the weight's shape, values in [0, k)

    @property
    def index_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook.numel())))

    def dequantize(self) -> torch.Tensor:
        return self.codebook[self.indices]

    def to(self, device: torch.device | str) -> SharedWeights:
        """The same encoding with its tensors on ``device``."""
        return SharedWeights(self.codebook.to(device), self.indices.to(device))


@dataclass(frozen=True)
class QuantizedWeights:
    """Symmetric per-output-channel integers: weight = values * scales[channel]."""

    bits: int
    scales: torch.Tensor  # (out_channels,) float32, > 0
    values: torch.Tensor  # integers of the weight's shape in [-(2**(bits-1) - 1), 2**(bits-1) - 1]
    # (int8 up to 8 bits, int16 above when quantized here; int64 when read from a file)

    @property
    def max_level(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def dequantize(self) -> torch.Tensor:
        shape = (-1,) + (1,) * (self.values.dim() - 1)
        return self.values.to(torch.float32).mul_(self.scales.view(shape))

    def to(self, device: torch.device | str) -> QuantizedWeights:
        """The same encoding with its tensors on ``device``."""
        return QuantizedWeights(self.bits, self.scales.to(device), self.values.to(device))


LayerEncoding = SharedWeights | QuantizedWeights
