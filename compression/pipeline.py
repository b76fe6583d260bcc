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

from compression.auto import apply_auto
from compression.criteria import Criterion, DeepLiftSettings, Scores, ScoringOptions, get_criterion
from compression.data import Dataset, fit_to_model, split
from compression.evaluate import ModelMetrics, layer_table, measure, snapshot
from compression.io import LoadedModel
from compression.layers import weighted_layers
from compression.progress import CancelCheck, Monitor, ProgressCallback
from compression.steps import WorkingModel, apply_step
from jobspec import Spec, Step


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
    module = copy.deepcopy(model.module).eval()
    example = model.example_input()
    working = WorkingModel(module, example, weighted_layers(module, example))
    shapes_before = snapshot(working.layers)
    with monitor.within(0.0, 0.1), monitor.enter("evaluating"):
        before = measure(model.module, model.input_shape, evaluation, spec.evaluation, monitor)
    steps = []
    share = 0.75 / len(spec.steps)
    for index, step in enumerate(spec.steps):
        with monitor.within(0.1 + index * share, 0.1 + (index + 1) * share):
            steps.append(_run_step(working, step, spec, calibration, monitor))
    with monitor.within(0.85, 1.0), monitor.enter("evaluating"):
        after = measure(working.module, model.input_shape, evaluation, spec.evaluation, monitor)
    compressed = LoadedModel(working.module, model.input_shape, model.num_classes, model.source)
    first_scores = working.scores[0] if working.scores else None
    rows = layer_table(shapes_before, working.module, first_scores)
    metrics = {
        "criterion": spec.criterion,
        "before": before.as_dict(),
        "after": after.as_dict(),
        "reduction": _reduction(before, after),
        "layers": [row.as_dict() for row in rows],
        "steps": steps,
        "attribution": {
            "completeness_error": max(working.completeness, default=None),
            "baseline": spec.attribution.baseline,
            "target": spec.attribution.deeplift_target,
        },
        "data": {
            "calibration_samples": calibration.num_samples,
            "evaluation_samples": evaluation.num_samples,
        },
        "stage_seconds": dict(monitor.stage_seconds),
    }
    return Result(compressed, metrics, working.scores, working.masks)


def _run_step(
    working: WorkingModel, step: Step, spec: Spec, calibration: Dataset, monitor: Monitor
) -> dict[str, Any]:
    settings = spec.attribution
    options = ScoringOptions(settings.batch_size, settings.target, spec.seed)
    deeplift = DeepLiftSettings(
        settings.baseline, settings.deeplift_target, settings.channel_score, settings.weight_score
    )

    def make_criterion(name: str) -> Criterion:
        return get_criterion(name, options, deeplift)

    name = step.criterion or spec.criterion
    if name == "auto":
        return apply_auto(working, step, make_criterion, calibration, spec.seed, monitor)
    return apply_step(working, step, make_criterion(name), calibration, monitor)


def _calibration_and_evaluation(
    model: LoadedModel, data: Dataset, eval_data: Dataset | None, spec: Spec
) -> tuple[Dataset, Dataset]:
    data = fit_to_model(data, model.input_shape, model.num_classes)
    if eval_data is not None:
        calibration = data
        evaluation = fit_to_model(eval_data, model.input_shape, model.num_classes)
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
