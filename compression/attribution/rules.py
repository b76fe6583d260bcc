"""DeepLIFT's rules as autograd functions: the backward pass carries multipliers, not gradients.

For a nonlinearity y = f(x), DeepLIFT's Rescale rule replaces f'(x) by the secant
m = (f(x) - f(x')) / (x - x') between the input and its reference x', so that
m * (x - x') = f(x) - f(x') exactly and relevance is conserved layer by layer. Linear layers
need no rule: their gradient already is the multiplier. Max pooling and products of two
input-dependent tensors get rules of their own.

The reference tensors come from a separate forward pass (often a single reference sample
broadcast to the batch), so only the real inputs are pushed through autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

EPS = 1e-7
"""Below this |x - x'| the secant is numerically meaningless and the gradient is used."""


def _local_gradient(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(leaf).sum(), leaf)
    return grad


def rescale_multiplier(
    fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, x_ref: Tensor, y_ref: Tensor
) -> Tensor:
    """(y - y') / (x - x'), with the local gradient where |x - x'| <= EPS."""
    delta = x - x_ref
    secant = torch.sub(y, y_ref)
    secant.div_(delta)
    small = delta.abs_() <= EPS
    if bool(small.any()):
        secant[small] = _local_gradient(fn, x[small])
    return secant


class Rescale(torch.autograd.Function):
    """y = fn(x) forward; grad_in = grad_out * (y - y') / (x - x') backward.

    The multiplier is computed once in the forward pass and is all the backward needs.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, x_ref: Tensor, y_ref: Tensor, fn: Callable) -> Tensor:
        y = fn(x)
        ctx.save_for_backward(rescale_multiplier(fn, x, y, x_ref, y_ref))
        return y

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None, None]:
        (multiplier,) = ctx.saved_tensors
        return grad_out * multiplier, None, None, None


def _scatter_to_inputs(values: Tensor, indices: Tensor, input_shape: torch.Size) -> Tensor:
    """Add pooled-output values back onto the input positions they were taken from."""
    n, c = values.shape[:2]
    flat = torch.zeros(n, c, input_shape[2:].numel(), dtype=values.dtype, device=values.device)
    flat.scatter_add_(2, indices.expand(n, c, *indices.shape[2:]).flatten(2), values.flatten(2))
    return flat.view(n, c, *input_shape[2:])


class MaxPoolRule(torch.autograd.Function):
    """Max pooling with relevance conserved.

    Each output's difference y - y' is split at the cross maximum t = max(y, y'): the part
    t - y' goes to the input position that is the maximum for the input, the part y - t to
    the position that is the maximum for the reference. Summed over positions,
    multiplier * (x - x') gives back sum(grad_out * (y - y')).
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, x_ref: Tensor, y_ref: Tensor, ref_indices: Tensor, pool: Callable
    ) -> Tensor:
        y, indices = pool(x)
        ctx.save_for_backward(x, y, indices, x_ref, y_ref, ref_indices)
        return y

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor, None, None, None, None]:
        x, y, indices, x_ref, y_ref, ref_indices = ctx.saved_tensors
        top = torch.maximum(y, y_ref)
        moved = _scatter_to_inputs(grad_out * (top - y_ref), indices, x.shape)
        moved = moved + _scatter_to_inputs(grad_out * (y - top), ref_indices, x.shape)
        delta_in = x - x_ref
        large = delta_in.abs() > EPS
        gradient = _scatter_to_inputs(grad_out, indices, x.shape)
        multiplied = torch.where(large, moved / torch.where(large, delta_in, 1.0), gradient)
        return multiplied, None, None, None, None


class ProductRule(torch.autograd.Function):
    """y = a * b of two input-dependent factors, with relevance conserved.

    The gradient (b, a) does not conserve: b * da + a * db misses ab - a'b' by da * db. The
    product's change is split symmetrically between the factors (the two-player Shapley
    value, as DeepLIFT's and Shapley's literature do for multiplicative interactions):

        ab - a'b' = (a - a') * (b + b') / 2 + (b - b') * (a + a') / 2,

    which holds exactly, so the multipliers are m_a = (b + b') / 2 and m_b = (a + a') / 2.
    Where a factor was broadcast (a (N, C, 1, 1) gate over an (N, C, H, W) map), its
    multiplier is summed back to its shape, as a gradient would be.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor, a_ref: Tensor, b_ref: Tensor) -> Tensor:
        ctx.save_for_backward(a + a_ref, b + b_ref)
        ctx.shapes = (a.shape, b.shape)
        return a * b

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        a_sum, b_sum = ctx.saved_tensors
        a_shape, b_shape = ctx.shapes
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = (grad_out * b_sum).mul_(0.5).sum_to_size(a_shape)
        if ctx.needs_input_grad[1]:
            grad_b = (grad_out * a_sum).mul_(0.5).sum_to_size(b_shape)
        return grad_a, grad_b, None, None
