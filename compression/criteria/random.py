"""Seeded uniform scores: the floor any informed criterion must beat."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from compression.criteria.base import Criterion, LayerScore, Scores
from compression.data import Dataset
from compression.progress import Monitor


class Random(Criterion):
    name = "random"
    needs_data = False

    def score(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        data: Dataset | None,
        monitor: Monitor | None = None,
        per_weight: bool = True,
    ) -> Scores:
        generator = torch.Generator().manual_seed(self.options.seed)
        scores: Scores = {}
        for name, layer in layers.items():
            weights = torch.rand(layer.weight.shape, generator=generator)
            channels = torch.rand(layer.weight.shape[0], generator=generator)
            scores[name] = LayerScore(channels, weights)
        return scores
