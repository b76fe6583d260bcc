"""Feed our per-channel scores into torch-pruning's dependency groups.

torch-pruning decides *which channels are coupled* (a conv, its BatchNorm, the next layer's
inputs, every branch of a residual add); our criterion decides *how important* a channel is.
A group's importance is the mean of the scores of the conv/linear outputs it removes,
normalised by the group mean so that global ranking compares layers fairly.
"""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

OUTPUT_PRUNING = (tp.prune_conv_out_channels, tp.prune_linear_out_channels)


class ScoreImportance(tp.importance.Importance):
    def __init__(self, normalize: bool = True) -> None:
        self.scores: dict[nn.Module, torch.Tensor] = {}
        self.normalize = normalize

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> torch.Tensor | None:
        size = len(group[0].idxs)
        total = torch.zeros(size)
        hits = torch.zeros(size)
        for index, (dep, idxs) in enumerate(group):
            if dep.pruning_fn not in OUTPUT_PRUNING or dep.layer not in self.scores:
                continue
            root_idxs = group[index].root_idxs
            if any(root is None for root in root_idxs):
                continue
            position = torch.as_tensor(root_idxs)
            total.scatter_add_(0, position, self.scores[dep.layer][torch.as_tensor(idxs)].float())
            hits.scatter_add_(0, position, torch.ones(len(idxs)))
        if not bool((hits > 0).any()):
            return None
        importance = total / hits.clamp_min(1)
        if self.normalize:
            importance = importance / importance.mean().clamp_min(1e-12)
        return importance
