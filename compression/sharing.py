"""Weight sharing (non-uniform quantization by clustering), after Deep Compression and
Sabih et al.: per layer, k-means on the weights, each weight replaced by its centroid.

Centroids start spread linearly over [min, max] (Han et al. found linear initialisation keeps
the rare large weights, which matter most). With relevance as the k-means sample weight,
centroids move toward the weights that carry the decision; pruned weights take no part and
stay exactly zero. The clustering is :func:`compression.kmeans1d.kmeans_1d` (sort-based, no
n x k matrix) on the runtime's device, in float64.
"""

from __future__ import annotations

import torch

from compression.encoding import SharedWeights
from compression.kmeans1d import kmeans_1d
from compression.runtime import CPU, Runtime


def share_weight(
    weight: torch.Tensor,
    clusters: int,
    sample_weight: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    runtime: Runtime = CPU,
) -> SharedWeights:
    """Cluster the kept weights of one layer into at most ``clusters`` shared values; the
    encoding comes back on the CPU."""
    put = runtime.put
    weight = put(weight.detach())
    keep = put(mask) if mask is not None else torch.ones_like(weight, dtype=torch.bool)
    values = weight[keep].double()
    k = max(1, min(clusters, int(torch.unique(values).numel())))
    indices = torch.zeros(weight.shape, dtype=torch.int64, device=weight.device)
    if values.numel() == 0:
        return SharedWeights(torch.zeros(1), indices.cpu())
    if k == 1:
        return SharedWeights(values.mean().reshape(1).float().cpu(), indices.cpu())
    weights = None
    if sample_weight is not None:
        weights = put(sample_weight.detach())[keep].double()
        weights = weights + 1e-12 * max(float(weights.max()), 1e-12)  # no all-zero weights
    init = torch.linspace(float(values.min()), float(values.max()), k, dtype=torch.float64)
    codebook, assignment = kmeans_1d(values, init, weights)
    indices[keep] = assignment.long()
    return SharedWeights(codebook.float().cpu(), indices.cpu())
