"""Relevance of single weights: the contribution of each connection, per sample.

For a linear layer y = W a + b, DeepLIFT gives output j the multiplier m_j, and the
connection i -> j carries R_ji = m_j * W_ji * (a_i - a'_i); summed over i and j these add up
to the layer's share of the explained difference. For a convolution the same holds per
position, and a weight's relevance is the sum over the positions it is applied at.
Relevance is summed per sample, and its absolute value accumulated over samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_ELEMENTS = 1 << 24
"""Per-sample conv relevance is computed in sample chunks of at most this many floats."""


def weight_relevance(layer: nn.Module, multiplier: Tensor, delta_in: Tensor) -> Tensor:
    """Sum over the batch of |R| for every weight of ``layer`` (weight-shaped)."""
    if isinstance(layer, nn.Linear):
        m = multiplier.reshape(-1, multiplier.shape[-1]).abs()
        d = delta_in.reshape(-1, delta_in.shape[-1]).abs()
        # |m_j W_ji d_i| = |W_ji| |m_j| |d_i|; m.T @ d >= 0, so scaling by W and taking the
        # absolute value in place avoids two weight-sized temporaries (400 MB each for VGG's FC).
        return (m.T @ d).mul_(layer.weight.detach()).abs_()
    return _conv_relevance(layer, multiplier, delta_in)


def _as_2d(layer: nn.Conv1d | nn.Conv2d, multiplier: Tensor, delta_in: Tensor):
    """View a 1-D convolution as a 2-D one with height 1."""
    if isinstance(layer, nn.Conv2d):
        return multiplier, delta_in, layer.kernel_size, layer.stride, layer.dilation, layer.padding
    padding = layer.padding if isinstance(layer.padding, str) else (0, layer.padding[0])
    return (
        multiplier.unsqueeze(2),
        delta_in.unsqueeze(2),
        (1, layer.kernel_size[0]),
        (1, layer.stride[0]),
        (1, layer.dilation[0]),
        padding,
    )


def _explicit_padding(padding: str | tuple, kernel: tuple, dilation: tuple) -> tuple[int, int]:
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))
    return tuple(padding)


def _conv_relevance(layer: nn.Module, multiplier: Tensor, delta_in: Tensor) -> Tensor:
    m, d, kernel, stride, dilation, padding = _as_2d(layer, multiplier, delta_in)
    padding = _explicit_padding(padding, kernel, dilation)
    groups = layer.groups
    weight = layer.weight.detach()
    out_channels = weight.shape[0]
    per_sample = out_channels * weight[0].numel()
    chunk = max(1, MAX_ELEMENTS // max(per_sample, 1))
    total = torch.zeros_like(weight)
    for start in range(0, d.shape[0], chunk):
        unfolded = F.unfold(d[start : start + chunk], kernel, dilation, padding, stride)
        n, _, positions = unfolded.shape
        unfolded = unfolded.view(n, groups, -1, positions)
        mult = m[start : start + chunk].reshape(n, groups, out_channels // groups, positions)
        contributions = torch.einsum("ngop,ngkp->ngok", mult, unfolded)
        contributions = contributions.reshape(n, *weight.shape) * weight
        total += contributions.abs().sum(dim=0)
    return total
