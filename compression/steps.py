"""Apply one compression step to the working model.

The working model carries what later steps must respect: keep-masks of pruned weights and
the encodings (codebooks, integer codes) of shared and quantized layers, the runtime its
module and example live on (masks live beside the weights; encodings on the CPU), and it caches the
scores of each criterion so relevance is computed again only when the model changed (and,
for per-weight scores on an unchanged shape, only when the spec asks to re-attribute).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from compression.bit_allocation import allocate_bits, average_bits
from compression.criteria import Criterion, DeepLift, Scores
from compression.data import Dataset
from compression.encoding import LayerEncoding, SharedWeights
from compression.errors import InvalidSpec
from compression.finetune import finetune
from compression.layers import select_layers
from compression.progress import Monitor
from compression.pruning.structured import prune_filters
from compression.pruning.unstructured import prune_weights
from compression.quantization import quantize_weight
from compression.runtime import CPU, Runtime
from compression.sharing import share_weight
from jobspec import FineTune, PruneFilters, PruneWeights, QuantizeMixed, ShareWeights, Step


@dataclass
class WorkingModel:
    module: nn.Module
    example: torch.Tensor
    layers: dict[str, nn.Module]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    encodings: dict[str, LayerEncoding] = field(default_factory=dict)
    scores: list[Scores] = field(default_factory=list)
    completeness: list[float] = field(default_factory=list)
    version: int = 0
    reattribute: bool = False
    cache: dict[str, tuple[int, bool, Scores]] = field(default_factory=dict)
    runtime: Runtime = CPU

    def copy(self) -> WorkingModel:
        """An independent copy whose layer dict points into the copied module."""
        module = copy.deepcopy(self.module)
        layers = {name: module.get_submodule(name) for name in self.layers}
        return WorkingModel(
            module, self.example, layers, dict(self.masks), dict(self.encodings),
            version=self.version, reattribute=self.reattribute, cache=dict(self.cache),
            runtime=self.runtime,
        )  # fmt: skip

    def set_weight(self, name: str, weight: torch.Tensor) -> None:
        """Write a layer's float weight, keeping pruned weights at exactly zero."""
        mask = self.masks.get(name)
        target = self.layers[name].weight
        with torch.no_grad():
            value = weight.to(target.device)
            value = value if mask is None else value * mask.to(target.device)
            target.copy_(value)

    def to_cpu(self) -> None:
        """Bring module, example, masks and encodings back to the CPU (export, packing)."""
        self.module.cpu()
        self.example = self.example.cpu()
        self.masks = {name: mask.cpu() for name, mask in self.masks.items()}
        self.encodings = {name: encoding.to("cpu") for name, encoding in self.encodings.items()}


def _shapes_match(scores: Scores, layers: dict[str, nn.Module]) -> bool:
    return all(
        name in scores and scores[name].channels.shape[0] == layer.weight.shape[0]
        and (scores[name].weights is None or scores[name].weights.shape == layer.weight.shape)
        for name, layer in layers.items()
    )  # fmt: skip


def _score(
    working: WorkingModel,
    criterion: Criterion,
    data: Dataset,
    monitor: Monitor,
    per_weight: bool,
    fresh: bool = False,
) -> Scores:
    cached = working.cache.get(criterion.name)
    if cached is not None and not fresh:
        version, has_weights, scores = cached
        reusable = version == working.version or (
            not working.reattribute and _shapes_match(scores, working.layers)
        )
        if reusable and (has_weights or not per_weight):
            return scores
    with monitor.enter("attributing"):
        scores = criterion.score(working.module, working.layers, data, monitor, per_weight)
    working.cache[criterion.name] = (working.version, per_weight, scores)
    working.scores.append(scores)
    if isinstance(criterion, DeepLift) and criterion.last is not None:
        working.completeness.append(criterion.last.completeness_error)
    return scores


def _importance(
    working: WorkingModel, how: str, names: list[str], criterion: Criterion, data: Dataset,
    monitor: Monitor,
) -> dict[str, torch.Tensor | None]:  # fmt: skip
    """Per-weight importance: the criterion's scores, |w|, or None (all weights alike)."""
    if how == "relevance":
        scores = _score(working, criterion, data, monitor, True)
        return {name: scores[name].weights for name in names}
    if how == "magnitude":
        return {name: working.layers[name].weight.detach().abs().cpu() for name in names}
    return {name: None for name in names}


def _prune_filters(
    working: WorkingModel, step: PruneFilters, criterion: Criterion, data: Dataset,
    monitor: Monitor,
) -> dict[str, Any]:  # fmt: skip
    if working.encodings:
        raise InvalidSpec("prune_filters must come before share_weights and quantize_mixed")
    calls = 0

    def score() -> Scores:
        nonlocal calls
        calls += 1
        return _score(working, criterion, data, monitor, False, fresh=calls > 1)

    prune_filters(working.module, working.example, working.layers, step, score, monitor)
    for name in working.masks:  # shapes changed: the zeros are the masks now
        working.masks[name] = working.layers[name].weight.detach() != 0
    return {}


def _prune_weights(
    working: WorkingModel, step: PruneWeights, criterion: Criterion, data: Dataset,
    monitor: Monitor,
) -> dict[str, Any]:  # fmt: skip
    if working.encodings:
        raise InvalidSpec("prune_weights must come before share_weights and quantize_mixed")
    names = select_layers(working.layers, step.type, step.layer_types, step.layers, step.protected)
    scores = _score(working, criterion, data, monitor, True)
    working.masks.update(prune_weights(working.layers, scores, names, step.sparsity, step.scope))
    return {}


def _share_weights(
    working: WorkingModel, step: ShareWeights, criterion: Criterion, data: Dataset,
    monitor: Monitor,
) -> dict[str, Any]:  # fmt: skip
    names = [
        name
        for name in select_layers(working.layers, step.type, step.layer_types, step.layers)
        if name not in working.encodings
    ]
    importance = _importance(working, step.weighting, names, criterion, data, monitor)
    clusters = {}
    for index, name in enumerate(names):
        k = step.layer_clusters.get(name, step.clusters)
        shared = share_weight(
            working.layers[name].weight, k, importance[name], working.masks.get(name),
            working.runtime,
        )  # fmt: skip
        working.encodings[name] = shared
        working.set_weight(name, shared.dequantize())
        clusters[name] = shared.codebook.numel()
        monitor.report((index + 1) / len(names))
    return {"clusters": clusters}


def _quantize_mixed(
    working: WorkingModel, step: QuantizeMixed, criterion: Criterion, data: Dataset,
    monitor: Monitor,
) -> dict[str, Any]:  # fmt: skip
    names = [
        name
        for name in select_layers(working.layers, step.type, step.layer_types, step.layers)
        if not isinstance(working.encodings.get(name), SharedWeights)
    ]
    with monitor.within(0.0, 0.4):  # attribution, when the scores are not cached
        importance = _importance(working, step.allocation, names, criterion, data, monitor)
    put = working.runtime.put  # quantization errors of every candidate width, on the device
    layers = {
        name: (
            working.layers[name].weight.detach(),
            put(importance[name]) if importance[name] is not None
            else torch.ones((), device=working.layers[name].weight.device).expand(
                working.layers[name].weight.shape),  # all alike, without a copy per weight
        )
        for name in names
    }  # fmt: skip
    del importance
    with monitor.within(0.4, 0.8):
        bits = allocate_bits(layers, step.candidate_bits, step.average_bits, monitor.report)
    del layers
    sizes = {name: working.layers[name].weight.numel() for name in names}
    total, done = max(sum(sizes.values()), 1), 0
    for name in names:  # reported by weights done: one wide layer is most of the work
        with monitor.within(0.8 + 0.2 * done / total, 0.8 + 0.2 * (done + sizes[name]) / total):
            weight = working.layers[name].weight.detach()
            quantized = quantize_weight(weight, bits[name], monitor.report).to("cpu")
            working.encodings[name] = quantized
            working.set_weight(name, quantized.dequantize())
        done += sizes[name]
    return {"bits": bits, "average_bits": average_bits(bits, sizes)}


def apply_step(
    working: WorkingModel,
    step: Step,
    criterion: Criterion,
    data: Dataset,
    monitor: Monitor | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Apply ``step`` in place (scoring with ``criterion`` where it needs scores); return the
    step's report."""
    monitor = monitor or Monitor()
    if isinstance(step, FineTune):
        with monitor.enter("finetuning"):
            details = finetune(working, data, step, monitor, seed)
        working.version += 1
        return {"type": step.type, **details}
    stage = {"share_weights": "sharing", "quantize_mixed": "quantizing"}.get(step.type, "pruning")
    with monitor.enter(stage):
        if isinstance(step, PruneFilters):
            details = _prune_filters(working, step, criterion, data, monitor)
        elif isinstance(step, PruneWeights):
            details = _prune_weights(working, step, criterion, data, monitor)
        elif isinstance(step, ShareWeights):
            details = _share_weights(working, step, criterion, data, monitor)
        elif isinstance(step, QuantizeMixed):
            details = _quantize_mixed(working, step, criterion, data, monitor)
        else:
            raise InvalidSpec(f"unknown step {step.type!r}")
    working.version += 1
    return {"type": step.type, "criterion": criterion.name, **details}
