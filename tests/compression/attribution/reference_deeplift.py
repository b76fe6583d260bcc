"""An independent DeepLIFT, written out layer by layer for sequential models.

It shares no code with ``compression.attribution``: activations of the input and of the
reference are computed separately, multipliers are propagated backwards explicitly (the
transpose of each linear layer, the Rescale ratio at each ReLU, and the max-pool rule
evaluated window by window in plain Python loops). Slow, and only for tiny models.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _linear_backward(layer: nn.Module, x: Tensor, multiplier_out: Tensor) -> Tensor:
    """Multiplier at the input of an affine layer: its transpose applied to m_out."""
    leaf = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((layer(leaf) * multiplier_out).sum(), leaf)
    return grad


def _maxpool_backward(pool: nn.MaxPool2d, x: Tensor, x_ref: Tensor, m_out: Tensor) -> Tensor:
    k, s = pool.kernel_size, pool.stride
    y, y_ref = pool(x), pool(x_ref)
    moved = torch.zeros_like(x)
    n_, c_, oh_, ow_ = y.shape
    for n in range(n_):
        for c in range(c_):
            for i in range(oh_):
                for j in range(ow_):
                    window = x[n, c, i * s : i * s + k, j * s : j * s + k]
                    window_ref = x_ref[n, c, i * s : i * s + k, j * s : j * s + k]
                    a = divmod(int(window.argmax()), k)
                    b = divmod(int(window_ref.argmax()), k)
                    top = max(float(y[n, c, i, j]), float(y_ref[n, c, i, j]))
                    g = float(m_out[n, c, i, j])
                    moved[n, c, i * s + a[0], j * s + a[1]] += g * (top - float(y_ref[n, c, i, j]))
                    moved[n, c, i * s + b[0], j * s + b[1]] += g * (float(y[n, c, i, j]) - top)
    delta = x - x_ref
    return torch.where(delta.abs() > 1e-7, moved / torch.where(delta.abs() > 1e-7, delta, 1.0), 0.0)


def reference_relevance(
    model: nn.Sequential, x: Tensor, x_ref: Tensor, target: Tensor
) -> dict[int, Tensor]:
    """Relevance (a - a') * m at the output of every layer, by index in ``model``."""
    acts, acts_ref = [x], [x_ref]
    with torch.no_grad():
        for layer in model:
            acts.append(layer(acts[-1]))
            acts_ref.append(layer(acts_ref[-1]))
    multiplier = torch.zeros_like(acts[-1]).scatter_(1, target[:, None], 1.0)
    relevance = {}
    for index in reversed(range(len(model))):
        layer = model[index]
        relevance[index] = (acts[index + 1] - acts_ref[index + 1]) * multiplier
        a_in, a_in_ref, a_out, a_out_ref = (
            acts[index],
            acts_ref[index],
            acts[index + 1],
            acts_ref[index + 1],
        )
        if isinstance(layer, nn.ReLU):
            delta = a_in - a_in_ref
            ratio = (a_out - a_out_ref) / torch.where(delta.abs() > 1e-7, delta, 1.0)
            multiplier = multiplier * torch.where(delta.abs() > 1e-7, ratio, (a_in > 0).float())
        elif isinstance(layer, nn.MaxPool2d):
            multiplier = _maxpool_backward(layer, a_in, a_in_ref.expand_as(a_in), multiplier)
        else:
            multiplier = _linear_backward(layer, a_in, multiplier)
    relevance[-1] = (x - x_ref) * multiplier
    return relevance
