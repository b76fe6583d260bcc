"""The single entry point: ``compress(model, data, spec) -> Result``.

The caller's model is never modified; the steps work on a copy, in order. Progress goes to
``progress(stage, fraction)`` and ``should_cancel()`` is polled between and inside long
loops, so a service can show progress and stop a job promptly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from compression.criteria import Scores, ScoringOptions, get_criterion
from compression.data import Dataset, split, validate_for_model
from compression.evaluate import ModelMetrics, layer_table, measure, snapshot
from compression.io import LoadedModel
from compression.layers import weighted_layers
from compression.progress import CancelCheck, Monitor, ProgressCallback
from compression.pruning.structured import prune_filters
from compression.pruning.unstructured import prune_weights, select_layers
from compression.spec import PruneFilters, PruneWeights, Spec


@dataclass
class Result:
    """The compressed model, its report (JSON-ready) and the scores that drove each step."""

    model: LoadedModel
    metrics: dict[str, Any]
    scores: list[Scores] = field(default_factory=list)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)


def compress(
    model: LoadedModel,
    data: Dataset,
    spec: Spec,
    *,
    eval_data: Dataset | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> Result:
    monitor = Monitor(progress, should_cancel)
    calibration, evaluation = _calibration_and_evaluation(model, data, eval_data, spec)
    work = copy.deepcopy(model.module).eval()
    example = model.example_input()
    layers = weighted_layers(work, example)
    shapes_before = snapshot(layers)
    with monitor.enter("evaluating"):
        before = measure(model.module, model.input_shape, evaluation, spec.evaluation, monitor)
    options = ScoringOptions(spec.attribution.batch_size, spec.attribution.target, spec.seed)
    all_scores: list[Scores] = []
    masks: dict[str, torch.Tensor] = {}
    steps: list[dict[str, Any]] = []
    for step in spec.steps:
        criterion = get_criterion(step.criterion or spec.criterion, options)

        def score(criterion=criterion) -> Scores:
            with monitor.enter("attributing"):
                scores = criterion.score(work, layers, calibration, monitor)
            all_scores.append(scores)
            return scores

        with monitor.enter("pruning"):
            if isinstance(step, PruneFilters):
                prune_filters(work, example, layers, step, score, monitor)
            elif isinstance(step, PruneWeights):
                names = select_layers(layers, step)
                masks.update(prune_weights(layers, score(), names, step.sparsity, step.scope))
        steps.append({"type": step.type, "criterion": criterion.name})
    with monitor.enter("evaluating"):
        after = measure(work, model.input_shape, evaluation, spec.evaluation, monitor)
    compressed = LoadedModel(work, model.input_shape, model.num_classes, model.source)
    rows = layer_table(shapes_before, work, all_scores[0] if all_scores else None)
    metrics = {
        "criterion": spec.criterion,
        "before": before.as_dict(),
        "after": after.as_dict(),
        "reduction": _reduction(before, after),
        "layers": [row.as_dict() for row in rows],
        "steps": steps,
        "data": {
            "calibration_samples": calibration.num_samples,
            "evaluation_samples": evaluation.num_samples,
        },
        "stage_seconds": dict(monitor.stage_seconds),
    }
    return Result(compressed, metrics, all_scores, masks)


def _calibration_and_evaluation(
    model: LoadedModel, data: Dataset, eval_data: Dataset | None, spec: Spec
) -> tuple[Dataset, Dataset]:
    validate_for_model(data, model.input_shape, model.num_classes)
    if eval_data is not None:
        validate_for_model(eval_data, model.input_shape, model.num_classes)
        calibration, evaluation = data, eval_data
    else:
        calibration, evaluation = split(data, spec.evaluation.calibration_fraction, spec.seed)
    if calibration.num_samples > spec.attribution.samples:
        calibration, _ = split(calibration, spec.attribution.samples, spec.seed)
    return calibration, evaluation


def _reduction(before: ModelMetrics, after: ModelMetrics) -> dict[str, float]:
    """How many times smaller / faster the compressed model is (> 1 is better)."""
    return {
        "parameters": before.parameters / max(after.parameters, 1),
        "nonzero_parameters": before.nonzero_parameters / max(after.nonzero_parameters, 1),
        "macs": before.macs / max(after.macs, 1),
        "latency": before.latency_ms / max(after.latency_ms, 1e-9),
    }
