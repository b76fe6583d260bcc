"""Structured pruning: physically remove filters and neurons with torch-pruning.

torch-pruning's dependency graph keeps every coupled tensor consistent (BatchNorm, the next
layer's inputs, residual adds, concatenations, depthwise convs); our criterion supplies the
importance through :class:`ScoreImportance`. With ``iterative_steps`` > 1 the model is
rescored after each step, so later decisions see the already-pruned network.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch_pruning as tp
from torch import nn

from compression.criteria import Scores
from compression.errors import InvalidSpec, PruningFailed
from compression.layers import default_protected
from compression.progress import Monitor
from compression.pruning.importance import ScoreImportance
from jobspec import PruneFilters


def prune_filters(
    model: nn.Module,
    example: torch.Tensor,
    layers: dict[str, nn.Module],
    step: PruneFilters,
    score: Callable[[], Scores],
    monitor: Monitor | None = None,
) -> None:
    """Prune ``model`` in place; ``score`` is called before each iteration on the current model."""
    protected = default_protected(layers) if step.protected is None else step.protected
    _check_names(layers, [*protected, *step.layer_ratios], "prune_filters")
    with torch.no_grad():
        reference = model.eval()(example)
    importance = ScoreImportance(normalize=step.scope == "global")
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=importance,
        global_pruning=step.scope == "global",
        pruning_ratio=step.ratio,
        pruning_ratio_dict={layers[name]: ratio for name, ratio in step.layer_ratios.items()},
        max_pruning_ratio=max(step.max_layer_ratio, step.ratio),
        iterative_steps=step.iterative_steps,
        ignored_layers=[layers[name] for name in protected],
        round_to=step.round_to,
    )
    for iteration in range(step.iterative_steps):
        scores = score()
        importance.scores = {layers[name]: s.channels for name, s in scores.items()}
        pruner.step()
        if monitor:
            monitor.report((iteration + 1) / step.iterative_steps)
    _check_still_runs(model, example, reference.shape)


def _check_names(layers: dict[str, nn.Module], names: list[str], step: str) -> None:
    unknown = sorted(set(names) - set(layers))
    if unknown:
        raise InvalidSpec(
            f"{step} names layers the model does not have: {unknown}; "
            f"its conv/linear layers are {list(layers)}"
        )


def _check_still_runs(model: nn.Module, example: torch.Tensor, shape: torch.Size) -> None:
    try:
        with torch.no_grad():
            output = model(example)
    except RuntimeError as exc:
        raise PruningFailed(
            "the pruned model no longer runs, most likely because a shape is hard-coded in "
            f"its graph: {str(exc).splitlines()[0]}"
        ) from exc
    if output.shape != shape:
        raise PruningFailed(
            f"pruning changed the output shape from {tuple(shape)} to {tuple(output.shape)}"
        )
