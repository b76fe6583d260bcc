"""Magnitude: |w| per weight, the L1 norm of each filter or neuron. Needs no data."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from compression.criteria.base import Criterion, LayerScore, Scores, channel_sum
from compression.data import Dataset
from compression.progress import Monitor


class L1(Criterion):
    name = "l1"
    needs_data = False

    def score(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        data: Dataset | None,
        monitor: Monitor | None = None,
        per_weight: bool = True,
    ) -> Scores:
        scores: Scores = {}
        for name, layer in layers.items():
            weights = layer.weight.detach().abs().cpu()
            scores[name] = LayerScore(channel_sum(weights), weights)
        return scores
