"""DeepLIFT relevance as an importance criterion (Sabih, Hannig, Teich 2020).

Relevance comes from the one-pass engine in ``compression.attribution``; the settings choose
what is explained (target), against what (baseline), and how relevance becomes a score.
``benchmarks/deeplift_variants.py`` measured the choices; the defaults are the winners
there (docs/deeplift.md explains them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn

from compression.attribution.baselines import BaselineName
from compression.attribution.engine import Attribution, LayerRelevance, attribute
from compression.attribution.targets import TargetName
from compression.criteria.base import Criterion, LayerScore, Scores, ScoringOptions, require_data
from compression.data import Dataset
from compression.progress import Monitor


@dataclass(frozen=True)
class DeepLiftSettings:
    baseline: BaselineName = "zeros"
    target: TargetName = "logit"
    channel_score: str = "relevance"  # relevance | net | ablation | relevance_x_magnitude
    weight_score: str = "relevance_x_magnitude"  # relevance | relevance_x_magnitude
    classes: int = 1  # the target class plus classes - 1 strongest competitors


_NEEDS = {
    "relevance": ("relevance",),
    "net": ("net",),
    "ablation": ("ablation",),
    "relevance_x_magnitude": ("relevance",),
}


def _normalized(values: torch.Tensor) -> torch.Tensor:
    return values / values.mean().clamp_min(1e-12)


def _channel_score(relevance: LayerRelevance, layer: nn.Module, how: str) -> torch.Tensor:
    if how == "net":
        return relevance.channel_net
    if how == "ablation":
        return relevance.ablation
    if how == "relevance_x_magnitude":
        magnitude = layer.weight.detach().abs().flatten(1).sum(dim=1).cpu()
        return _normalized(relevance.channel) * _normalized(magnitude)
    return relevance.channel


def _weight_score(relevance: LayerRelevance, layer: nn.Module, how: str) -> torch.Tensor | None:
    """Scales the relevance in place: it is the only copy, and a copy per weight of a 130M
    parameter model is half a gigabyte."""
    if relevance.weights is None or how == "relevance":
        return relevance.weights
    return relevance.weights.mul_(layer.weight.detach().abs().cpu())


class DeepLift(Criterion):
    name = "deeplift"

    def __init__(
        self, options: ScoringOptions | None = None, settings: DeepLiftSettings | None = None
    ) -> None:
        super().__init__(options)
        self.settings = settings or DeepLiftSettings()
        self.last: Attribution | None = None

    def score(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        data: Dataset | None,
        monitor: Monitor | None = None,
        per_weight: bool = True,
    ) -> Scores:
        data = require_data(data, self.name)
        attribution = attribute(
            model,
            layers,
            data,
            baseline=self.settings.baseline,
            target=self.settings.target,
            explain=self.options.target,
            classes=self.settings.classes,
            batch_size=self.options.batch_size,
            channel_scores=_NEEDS[self.settings.channel_score],
            per_weight=per_weight,
            monitor=monitor,
            runtime=self.options.runtime,
        )
        scores = {
            name: LayerScore(
                _channel_score(attribution.layers[name], layer, self.settings.channel_score),
                _weight_score(attribution.layers[name], layer, self.settings.weight_score),
            )
            for name, layer in layers.items()
        }
        # Kept for its completeness and channel figures; the per-weight relevance became the
        # scores (scaled in place), so it is not held twice.
        self.last = replace(
            attribution,
            layers={name: replace(r, weights=None) for name, r in attribution.layers.items()},
        )
        return scores
