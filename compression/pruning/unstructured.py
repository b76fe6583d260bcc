"""Unstructured pruning: zero the least important individual weights.

Exactly ``round(sparsity * n)`` weights become zero in each layer (layer scope) or across
the chosen layers (global scope). Weights that are already zero rank first, so a second
pruning pass never revives them. The zeros are written into the weights; the returned
masks let later steps (fine-tuning) keep them at zero.
"""

from __future__ import annotations

import torch
from torch import nn

from compression.criteria import Scores


def _ranking(layer: nn.Module, score: torch.Tensor) -> torch.Tensor:
    """Scores with existing zeros forced to the bottom."""
    ranking = score.detach().flatten().float().clone()
    ranking[layer.weight.detach().flatten().cpu() == 0] = -1.0
    return ranking


def _keep_highest(ranking: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask that drops exactly round(sparsity * n) lowest-ranked entries (stable on ties)."""
    keep = torch.ones_like(ranking, dtype=torch.bool)
    keep[torch.argsort(ranking, stable=True)[: round(sparsity * ranking.numel())]] = False
    return keep


@torch.no_grad()
def prune_weights(
    layers: dict[str, nn.Module], scores: Scores, names: list[str], sparsity: float, scope: str
) -> dict[str, torch.Tensor]:
    """Zero weights in place; return a keep-mask (bool, weight-shaped) per pruned layer."""
    rankings = {name: _ranking(layers[name], scores[name].weights) for name in names}
    if scope == "global":
        everything = torch.cat(list(rankings.values()))
        keep_all = _keep_highest(everything, sparsity)
        sizes = [ranking.numel() for ranking in rankings.values()]
        keeps = dict(zip(names, torch.split(keep_all, sizes), strict=True))
    else:
        keeps = {name: _keep_highest(ranking, sparsity) for name, ranking in rankings.items()}
    masks = {}
    for name, keep in keeps.items():
        weight = layers[name].weight
        mask = keep.reshape(weight.shape).to(weight.device)
        weight.mul_(mask)
        masks[name] = mask
    return masks
