"""Apply one compression step to the working model, with a given criterion.

The working model carries what later steps and fine-tuning must respect (masks) and what the
report shows (scores, attribution completeness). ``auto`` tries candidate criteria on copies.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from compression.criteria import Criterion, DeepLift, Scores
from compression.data import Dataset
from compression.progress import Monitor
from compression.pruning.structured import prune_filters
from compression.pruning.unstructured import prune_weights, select_layers
from jobspec import PruneFilters, PruneWeights, Step


@dataclass
class WorkingModel:
    module: nn.Module
    example: torch.Tensor
    layers: dict[str, nn.Module]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    scores: list[Scores] = field(default_factory=list)
    completeness: list[float] = field(default_factory=list)

    def copy(self) -> WorkingModel:
        """An independent copy whose layer dict points into the copied module."""
        module = copy.deepcopy(self.module)
        layers = {name: module.get_submodule(name) for name in self.layers}
        return WorkingModel(module, self.example, layers, dict(self.masks))


def apply_step(
    working: WorkingModel,
    step: Step,
    criterion: Criterion,
    data: Dataset,
    monitor: Monitor | None = None,
) -> dict[str, Any]:
    """Score with ``criterion`` and apply ``step`` in place; return the step's report."""
    monitor = monitor or Monitor()
    per_weight = isinstance(step, PruneWeights)

    def score() -> Scores:
        with monitor.enter("attributing"):
            scores = criterion.score(working.module, working.layers, data, monitor, per_weight)
        working.scores.append(scores)
        if isinstance(criterion, DeepLift) and criterion.last is not None:
            working.completeness.append(criterion.last.completeness_error)
        return scores

    with monitor.enter("pruning"):
        if isinstance(step, PruneFilters):
            prune_filters(working.module, working.example, working.layers, step, score, monitor)
        elif isinstance(step, PruneWeights):
            names = select_layers(working.layers, step)
            masks = prune_weights(working.layers, score(), names, step.sparsity, step.scope)
            working.masks.update(masks)
    return {"type": step.type, "criterion": criterion.name}
