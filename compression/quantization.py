"""Symmetric per-output-channel integer quantization, and the error it costs a layer.

One scale per output channel keeps a single large filter from coarsening every other filter's
levels; symmetric levels keep zero exactly representable, so pruned weights stay pruned.
``QuantizedWeights.dequantize()`` alone defines the float weight a quantized layer computes with.

Channels are independent, so both functions walk a layer a slice of output channels at a time
(``channel_slices``): the float32/float64 temporaries of a 100M-weight fully connected layer
stay around a hundred MiB instead of several GiB, and each slice is a progress report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from compression.encoding import QuantizedWeights

SLICE_WEIGHTS = 1 << 22
"""Weights per slice of output channels (at least one channel): about 100 MiB of float64
temporaries and a fraction of a second of work on a busy CPU."""


def channel_slices(weight: torch.Tensor) -> list[slice]:
    """Consecutive slices of output channels (dim 0) of at most ``SLICE_WEIGHTS`` weights each
    (a single channel may hold more)."""
    channels = weight.shape[0]
    per_channel = max(1, weight.numel() // max(channels, 1))
    step = max(1, SLICE_WEIGHTS // per_channel)
    return [slice(start, min(start + step, channels)) for start in range(0, channels, step)]


def level_dtype(bits: int) -> torch.dtype:
    """The narrowest signed integer type holding ``bits``-bit symmetric levels."""
    return torch.int8 if bits <= 8 else torch.int16


def quantize_weight(
    weight: torch.Tensor, bits: int, progress: Callable[[float], None] | None = None
) -> QuantizedWeights:
    """Round each output channel (dim 0) onto integer levels scaled to its largest |w|; the
    levels are held in the narrowest integer type (``level_dtype``); ``progress(fraction)``
    after each slice of channels."""
    max_level = _max_level(bits)
    weight = weight.detach()
    values = torch.empty(weight.shape, dtype=level_dtype(bits), device=weight.device)
    scales = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for rows, w, fraction in _slices(weight):
        scales[rows] = _scales(w, max_level)
        values[rows] = _levels(w, scales[rows], max_level).to(values.dtype)
        if progress is not None:
            progress(fraction)
    return QuantizedWeights(bits, scales, values)


def quantization_errors(
    weight: torch.Tensor,
    importance: torch.Tensor,
    widths: Sequence[int],
    progress: Callable[[float], None] | None = None,
) -> dict[int, float]:
    """sum(importance * (w - dequantized w)**2) for each width in ``widths``: what quantizing
    to that width costs this layer, in one pass over its channels (``progress(fraction)``
    after each slice).

    Summed in float64 so the bit allocator can tell apart totals of large layers; each term
    equals what ``quantize_weight(weight, bits).dequantize()`` would give."""
    if importance.shape != weight.shape:
        raise ValueError(
            f"importance has shape {tuple(importance.shape)}, weight {tuple(weight.shape)}"
        )
    totals = dict.fromkeys(widths, 0.0)
    for rows, w, fraction in _slices(weight.detach()):
        part = importance[rows].detach().to(device=w.device, dtype=torch.float64)
        if bool((part < 0).any()):
            raise ValueError("importance must be non-negative")
        for bits in totals:
            max_level = _max_level(bits)
            scales = _scales(w, max_level)
            dequantized = _levels(w, scales, max_level).mul_(scales.view(_column(w)))
            diff = (w - dequantized).to(torch.float64)
            totals[bits] += float((part * diff.square_()).sum())
        if progress is not None:
            progress(fraction)
    return totals


def quantization_error(weight: torch.Tensor, importance: torch.Tensor, bits: int) -> float:
    """``quantization_errors`` at one width."""
    return quantization_errors(weight, importance, [bits])[bits]


def _max_level(bits: int) -> int:
    if bits < 2:
        raise ValueError(f"symmetric quantization needs at least 2 bits, got {bits}")
    return 2 ** (bits - 1) - 1


def _slices(weight: torch.Tensor) -> Iterable[tuple[slice, torch.Tensor, float]]:
    """(channels, their float32 weights, fraction of the layer done after them)."""
    slices = channel_slices(weight)
    for index, rows in enumerate(slices):
        yield rows, weight[rows].to(torch.float32), (index + 1) / len(slices)


def _column(w: torch.Tensor) -> tuple[int, ...]:
    return (-1,) + (1,) * (w.dim() - 1)


def _scales(w: torch.Tensor, max_level: int) -> torch.Tensor:
    """Per-channel scales of float32 weights ``w``; an all-zero channel would divide by zero,
    so scale 1 quantizes it to exact zeros instead."""
    scales = w.reshape(w.shape[0], -1).abs().amax(dim=1) / max_level
    return torch.where(scales > 0, scales, torch.ones_like(scales))


def _levels(w: torch.Tensor, scales: torch.Tensor, max_level: int) -> torch.Tensor:
    """The integer levels of ``w`` as float32 (exact: |level| < 2**15)."""
    return torch.round(w / scales.view(_column(w))).clamp_(-max_level, max_level)
