"""Weighted k-means of scalars (Lloyd's algorithm) in torch, on any device, in O(n) memory.

On a line, the points nearest to each of k sorted centroids form k consecutive intervals whose
borders are the midpoints between neighbouring centroids. So a weight's cluster is found by
``torch.searchsorted`` among the k - 1 borders (O(log k) per weight) instead of an n x k
distance matrix: a 2.4M-weight layer at k = 256 needs a few tens of MiB, not gigabytes, and
runs the same way on a GPU as on the CPU. Centroids are weighted means (``index_add_``); a
cluster left empty is moved onto the value farthest from its centroid, as scikit-learn's
Lloyd does, so no codebook entry goes unused while values could use it.
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_ITERATIONS = 300
TOLERANCE = 1e-4
"""Stop when the centroids moved less than this times the variance of the values in total
(squared), as scikit-learn's KMeans does, or when no value changed cluster."""


def nearest_sorted(values: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest of ascending ``centroids`` for every value (a value exactly
    between two centroids goes to the lower one, as ``argmin`` of distances would)."""
    borders = (centroids[1:] + centroids[:-1]) / 2
    return torch.searchsorted(borders, values, out_int32=True)


def kmeans_1d(
    values: Tensor,
    init: Tensor,
    sample_weight: Tensor | None = None,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> tuple[Tensor, Tensor]:
    """Cluster the 1-D ``values`` starting from centroids ``init`` (k values); return the
    ascending centroids and each value's cluster index (int32), on the values' device.

    Computed in the dtype of ``values`` (the caller passes float64 for exact sums);
    ``sample_weight`` (non-negative, same shape) weights each value in the means."""
    if values.dim() != 1 or init.dim() != 1 or init.numel() == 0:
        raise ValueError("kmeans_1d clusters a 1-D tensor from a non-empty 1-D init")
    if sample_weight is not None and sample_weight.shape != values.shape:
        raise ValueError(
            f"sample_weight has shape {tuple(sample_weight.shape)}, values {tuple(values.shape)}"
        )
    centroids = init.to(device=values.device, dtype=values.dtype).sort().values
    k = centroids.numel()
    weights = None if sample_weight is None else sample_weight.to(values.dtype)
    weighted = values if weights is None else values * weights
    threshold = tolerance * float(values.var(unbiased=False)) if values.numel() > 1 else 0.0
    assignment = nearest_sorted(values, centroids)
    for _ in range(max_iterations):
        sums = torch.zeros_like(centroids).index_add_(0, assignment, weighted)
        if weights is None:
            totals = torch.bincount(assignment, minlength=k).to(values.dtype)
        else:
            totals = torch.zeros_like(centroids).index_add_(0, assignment, weights)
        _relocate_empty(values, weights, centroids, assignment, sums, totals)
        means = sums / totals.clamp_min(torch.finfo(values.dtype).tiny)
        moved = torch.where(totals > 0, means, centroids).sort().values
        shift = float((moved - centroids).square().sum())
        centroids = moved
        previous, assignment = assignment, nearest_sorted(values, centroids)
        if shift <= threshold or torch.equal(previous, assignment):
            break
    return centroids, assignment


def _relocate_empty(
    values: Tensor,
    weights: Tensor | None,
    centroids: Tensor,
    assignment: Tensor,
    sums: Tensor,
    totals: Tensor,
) -> None:
    """Give each empty cluster one of the values farthest from their centroids (farthest to
    the lowest empty index), taking it out of its old cluster's sums, in place."""
    empty = torch.nonzero(totals == 0).flatten()
    if empty.numel() == 0:
        return
    distances = (values - centroids[assignment]).abs()
    far = distances.topk(min(empty.numel(), values.numel())).indices
    empty = empty[: far.numel()]
    weight = torch.ones_like(values[far]) if weights is None else weights[far]
    old = assignment[far].long()
    sums.index_add_(0, old, -values[far] * weight)
    totals.index_add_(0, old, -weight)
    sums[empty] = values[far] * weight
    totals[empty] = weight
