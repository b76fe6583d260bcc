"""Symmetric per-output-channel integer quantization, and the error it costs a layer.

One scale per output channel keeps a single large filter from coarsening every other filter's
levels; symmetric levels keep zero exactly representable, so pruned weights stay pruned.
``QuantizedWeights.dequantize()`` alone defines the float weight a quantized layer computes with.
"""

from __future__ import annotations

import torch

from compression.encoding import QuantizedWeights


def quantize_weight(weight: torch.Tensor, bits: int) -> QuantizedWeights:
    """Round each output channel (dim 0) onto integer levels scaled to its largest |w|."""
    if bits < 2:
        raise ValueError(f"symmetric quantization needs at least 2 bits, got {bits}")
    max_level = 2 ** (bits - 1) - 1
    w = weight.detach().to(torch.float32)
    scales = w.reshape(w.shape[0], -1).abs().amax(dim=1) / max_level
    # An all-zero channel would divide by zero; scale 1 quantizes it to exact zeros instead.
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    shape = (-1,) + (1,) * (w.dim() - 1)
    values = torch.round(w / scales.view(shape)).clamp(-max_level, max_level).to(torch.int64)
    return QuantizedWeights(bits, scales, values)


def quantization_error(weight: torch.Tensor, importance: torch.Tensor, bits: int) -> float:
    """sum(importance * (w - dequantized w)**2): what quantizing to ``bits`` costs this layer.

    Summed in float64 so the bit allocator can tell apart totals of large layers.
    """
    if importance.shape != weight.shape:
        raise ValueError(
            f"importance has shape {tuple(importance.shape)}, weight {tuple(weight.shape)}"
        )
    if bool((importance < 0).any()):
        raise ValueError("importance must be non-negative")
    w = weight.detach().to(torch.float32)
    diff = (w - quantize_weight(w, bits).dequantize()).to(torch.float64)
    weights = importance.detach().to(device=diff.device, dtype=torch.float64)
    return float((weights * diff.square()).sum())
