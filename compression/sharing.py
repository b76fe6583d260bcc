"""Weight sharing (non-uniform quantization by clustering), after Deep Compression and
Sabih et al.: per layer, k-means on the weights, each weight replaced by its centroid.

Centroids start spread linearly over [min, max] (Han et al. found linear initialisation keeps
the rare large weights, which matter most). With relevance as the k-means sample weight,
centroids move toward the weights that carry the decision; pruned weights take no part and
stay exactly zero.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans

from compression.encoding import SharedWeights

MINI_BATCH_ABOVE = 200_000
"""Layers with more (kept) weights than this use MiniBatchKMeans."""


def share_weight(
    weight: torch.Tensor,
    clusters: int,
    sample_weight: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    seed: int = 0,
) -> SharedWeights:
    """Cluster the kept weights of one layer into at most ``clusters`` shared values."""
    keep = mask if mask is not None else torch.ones_like(weight, dtype=torch.bool)
    values = weight.detach()[keep].double().cpu().numpy()
    distinct = np.unique(values).size
    k = max(1, min(clusters, distinct))
    init = np.linspace(values.min(), values.max(), k)[:, None] if values.size else np.zeros((1, 1))
    weights = None
    if sample_weight is not None:
        weights = sample_weight.detach()[keep].double().cpu().numpy()
        weights = weights + 1e-12 * max(float(weights.max()), 1e-12)  # no all-zero weights
    if k == 1 or values.size == 0:
        codebook = np.array([values.mean() if values.size else 0.0])
    else:
        kind = MiniBatchKMeans if values.size > MINI_BATCH_ABOVE else KMeans
        extra = {"batch_size": 4096} if kind is MiniBatchKMeans else {}
        fitted = kind(n_clusters=k, init=init, n_init=1, random_state=seed, **extra).fit(
            values[:, None], sample_weight=weights
        )
        codebook = fitted.cluster_centers_[:, 0]
    codebook_t = torch.tensor(codebook, dtype=torch.float32)
    indices = torch.zeros(weight.shape, dtype=torch.int64)
    indices[keep] = torch.argmin(
        (torch.tensor(values)[:, None] - torch.tensor(codebook)[None, :]).abs(), dim=1
    )
    return SharedWeights(codebook_t, indices)
