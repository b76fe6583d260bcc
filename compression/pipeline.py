"""The single entry point: ``compress(model, data, spec) -> Result``.

The caller's model is never modified; the steps work on a copy, in order. Progress goes to
``progress(stage, fraction, overall)`` and ``should_cancel()`` is polled between and inside
long loops. The work runs on ``runtime`` (attribution, scoring, evaluation, fine-tuning,
k-means and quantization error on its device); export and the packed file work on the CPU,
and latency is timed on the CPU always and on the GPU too when the job ran on one.

With a sweep, the pipeline runs once per value of one setting, reusing the first
attribution, and returns the chosen point with the whole accuracy-vs-size curve.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from compression.auto import apply_auto
from compression.criteria import Criterion, DeepLiftSettings, Scores, ScoringOptions, get_criterion
from compression.data import Dataset, classes_covered, fit_to_model, split
from compression.deploy.deliverables import deliver_onnx, export_original
from compression.encoding import LayerEncoding
from compression.evaluate import ModelMetrics, compare_latency, layer_table, measure, snapshot
from compression.io import LoadedModel
from compression.layers import weighted_layers
from compression.packed import save_packed
from compression.parking import park
from compression.progress import CancelCheck, EventCallback, Monitor, ProgressCallback
from compression.runtime import CPU, Runtime
from compression.steps import WorkingModel, apply_step
from jobspec import FineTune, Int8Runtime, Spec, Step


@dataclass
class Result:
    """The compressed model, its report (JSON-ready), the scores that drove each step, and
    what the packed format needs (masks of pruned weights, encodings of compressed layers)."""

    model: LoadedModel
    metrics: dict[str, Any]
    scores: list[Scores] = field(default_factory=list)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    encodings: dict[str, LayerEncoding] = field(default_factory=dict)


@dataclass
class _Splits:
    train: Dataset
    calibration: Dataset
    evaluation: Dataset


def compress(
    model: LoadedModel,
    data: Dataset,
    spec: Spec,
    *,
    eval_data: Dataset | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    packed_path: str | Path | None = None,
    onnx_dir: str | Path | None = None,
    runtime: Runtime = CPU,
    events: EventCallback | None = None,
) -> Result:
    """Compress ``model``; the packed file of the result is measured for the report and, with
    ``packed_path``, kept there (so its reported size is the size of that very file).

    With ``onnx_dir`` the ONNX deliverables (``model.onnx`` carrying the compression,
    ``model.fp32.onnx``, and ``model.int8.onnx`` with an ``int8_runtime`` step) are written
    there, checked against torch, and timed in onnxruntime; an ``int8_runtime`` step without
    ``onnx_dir`` is measured and its files discarded. ``events(kind, details)`` hears of
    decisions made on the way (a batch size halved to fit the GPU)."""
    monitor = Monitor(progress, should_cancel, events)
    deliver = onnx_dir is not None or spec.int8_runtime is not None
    end = 0.85 if deliver else 1.0
    splits = _splits(model, data, eval_data, spec)
    original = _on_device(model.module, runtime)
    with tempfile.TemporaryDirectory() as scratch:
        with monitor.within(0.0, 0.1), monitor.enter("evaluating"):
            before = measure(
                original, model.input_shape, splits.evaluation, spec.evaluation, monitor,
                latency=False, runtime=runtime,
            )  # fmt: skip
            # the original's ONNX for the onnxruntime figures, exported while nothing else is
            original_onnx = export_original(model, Path(scratch)) if deliver else None
        files = [Path(scratch) / f"point{index}.xaic" for index in range(_points(spec))]
        if spec.sweep is None:
            with monitor.within(0.1, end):
                result = _run(model, spec, splits, before, monitor, {}, files[0], runtime, original)
                chosen = 0
        else:
            cache: dict[str, tuple[int, bool, Scores]] = {}
            points = []
            share = (end - 0.1) / len(spec.sweep.values)
            for index, value in enumerate(spec.sweep.values):
                with monitor.within(0.1 + index * share, 0.1 + (index + 1) * share):
                    point = spec.with_sweep_value(value)
                    points.append(
                        _run(
                            model,
                            point,
                            splits,
                            before,
                            monitor,
                            cache,
                            files[index],
                            runtime,
                            original,
                        )
                    )
            result = _choose(spec, points, before, cache)
            chosen = result.metrics["sweep"]["chosen"]
        if packed_path is not None:
            shutil.move(files[chosen], packed_path)
        if deliver:
            park(model.module, Path(scratch))  # idle until the caller's report reads it
            runtime.release()  # the sweep points' and the packing's cycles, before the export
            out = Path(onnx_dir) if onnx_dir is not None else Path(scratch)
            with monitor.within(end, 1.0), monitor.enter("exporting"):
                assert original_onnx is not None
                _deliver(original_onnx, result, out, spec, splits, monitor)
            result.metrics["stage_seconds"] = dict(monitor.stage_seconds)
    del original
    result.metrics["runtime"] = runtime.describe()
    return result


def _on_device(module: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """``module`` itself when it is on ``runtime.device``, else a copy there (the caller's
    model is never moved)."""
    parameter = next(module.parameters(), None)
    if parameter is None or parameter.device == runtime.device:
        return module
    return runtime.place(copy.deepcopy(module))


def _deliver(
    original: Path, result: Result, out: Path, spec: Spec, splits: _Splits, monitor: Monitor
) -> None:
    """The ONNX files and their onnxruntime figures, beside the torch ones in the report."""
    report = deliver_onnx(
        original, result.model, result.encodings, result.masks, out, spec,
        splits.train, splits.evaluation, monitor,
    )  # fmt: skip
    latency = report["onnxruntime_latency"]
    result.metrics["before"]["onnxruntime_latency_ms"] = latency["before"]["median_ms"]
    result.metrics["after"]["onnxruntime_latency_ms"] = latency["after"]["median_ms"]
    result.metrics.update(report)


def _points(spec: Spec) -> int:
    return 1 if spec.sweep is None else len(spec.sweep.values)


def _run(
    model: LoadedModel,
    spec: Spec,
    splits: _Splits,
    before: ModelMetrics,
    monitor: Monitor,
    cache: dict[str, tuple[int, bool, Scores]],
    packed_path: Path,
    runtime: Runtime,
    original: torch.nn.Module,
) -> Result:
    """Run every step on a fresh copy (on ``runtime.device``; ``original`` is the caller's
    model there) and write its packed file to ``packed_path``; ``cache`` carries scores of the
    unchanged model across sweep points (version 0 of every copy is the same model)."""
    module = runtime.place(copy.deepcopy(model.module).eval())
    example = runtime.put(model.example_input())
    working = WorkingModel(
        module, example, weighted_layers(module, example),
        reattribute=spec.attribution.reattribute, cache=dict(cache), runtime=runtime,
    )  # fmt: skip
    shapes_before = snapshot(working.layers)
    steps = []
    share = 0.8 / len(spec.steps)
    for index, step in enumerate(spec.steps):
        if isinstance(step, Int8Runtime):  # works on the exported model (deliver_onnx)
            steps.append({"type": step.type, "applied_to": "model.int8.onnx"})
            continue
        with monitor.within(index * share, (index + 1) * share):
            data = splits.train if isinstance(step, FineTune) else splits.calibration
            steps.append(_run_step(working, step, spec, data, monitor))
        # A step leaves cycles behind (torch-pruning's dependency graph, the FX copy DeepLIFT
        # runs on) that hold what it replaced: VGG-11-BN's unpruned weights, 0.6 GiB, stayed
        # until Python's collector got round to them, which it may not before the job ends.
        runtime.release()
    cache.update({k: v for k, v in working.cache.items() if v[0] == 0})
    with monitor.within(0.8, 1.0), monitor.enter("evaluating"):
        with monitor.within(0.0, 0.5):  # the accuracy pass; latency and packing follow
            after = measure(
                working.module, model.input_shape, splits.evaluation, spec.evaluation, monitor,
                latency=False, runtime=runtime,
            )  # fmt: skip
        gpu_latency = None
        if runtime.is_cuda:  # synchronized and warm, while both models are on the GPU
            gpu_latency = compare_latency(
                original, working.module, model.input_shape, spec.evaluation.latency_batch,
                spec.evaluation.latency_repeats, runtime=runtime,
                progress=lambda done: monitor.report(0.5 + 0.1 * done),
            )  # fmt: skip
        working.to_cpu()
        latency = compare_latency(
            _on_device(model.module, CPU), working.module, model.input_shape,
            spec.evaluation.latency_batch, spec.evaluation.latency_repeats,
            progress=lambda done: monitor.report(0.6 + 0.2 * done),
        )  # fmt: skip
        before = replace(before, latency_ms=latency.before.median_ms)
        after = replace(after, latency_ms=latency.after.median_ms)
        with monitor.within(0.8, 1.0):
            report = save_packed(
                working.module, working.example, packed_path, working.encodings, working.masks,
                progress=monitor.report,
            )  # fmt: skip
        packed = report.total_bytes
    compressed = LoadedModel(working.module, model.input_shape, model.num_classes, model.source)
    first_scores = working.scores[0] if working.scores else None
    rows = layer_table(shapes_before, working.module, first_scores, working.encodings)
    metrics = {
        "criterion": spec.criterion,
        "before": before.as_dict(),
        "after": {
            **after.as_dict(),
            "packed_bytes": packed,
            "packed_plain_bytes": report.plain_bytes,
        },
        "reduction": {
            **_reduction(before, after),
            "latency": latency.reduction,
            "size": before.fp32_bytes / packed,
        },
        "latency": latency.as_dict(),
        **({"gpu_latency": gpu_latency.as_dict()} if gpu_latency is not None else {}),
        "layers": [row.as_dict() for row in rows],
        "steps": steps,
        "attribution": _attribution_report(working.completeness, spec, len(working.scores)),
        "data": {
            "model_classes": model.num_classes,
            "classes_covered": classes_covered(splits.train, splits.evaluation),
            "evaluation_classes_covered": classes_covered(splits.evaluation),
            "training_samples": splits.train.num_samples,
            "calibration_samples": splits.calibration.num_samples,
            "evaluation_samples": splits.evaluation.num_samples,
        },
        "stage_seconds": dict(monitor.stage_seconds),
    }
    if gpu_latency is not None:
        metrics["before"]["gpu_latency_ms"] = gpu_latency.before.median_ms
        metrics["after"]["gpu_latency_ms"] = gpu_latency.after.median_ms
        metrics["reduction"]["gpu_latency"] = gpu_latency.reduction
    return Result(compressed, metrics, working.scores, working.masks, working.encodings)


COMPLETENESS_LIMIT = 1e-3
"""Above this relative completeness error, relevance is not conserved through some operator
of the model (one without a DeepLIFT rule) and the job says so: scores may mislead."""


def _attribution_report(errors: list[float], spec: Spec, passes: int) -> dict[str, Any]:
    error = max(errors, default=None)
    report: dict[str, Any] = {
        "completeness_error": error,
        "completeness_ok": None if error is None else error <= COMPLETENESS_LIMIT,
        "baseline": spec.attribution.baseline,
        "target": spec.attribution.deeplift_target,
        "passes": passes,
    }
    if error is not None and error > COMPLETENESS_LIMIT:
        report["warning"] = (
            f"DeepLIFT relevance misses f(x) - f(reference) by {error:.1%} (limit "
            f"{COMPLETENESS_LIMIT:.1%}): an operator of this model has no conserving rule, so "
            "relevance scores are approximate; compare with criterion 'auto' or 'l1'"
        )
    return report


def _choose(
    spec: Spec, points: list[Result], before: ModelMetrics, cache: dict[str, Any]
) -> Result:
    """The smallest point within the allowed accuracy drop, else the most accurate one."""
    assert spec.sweep is not None
    floor = (before.accuracy or 0.0) - spec.sweep.max_accuracy_drop
    good = [i for i, p in enumerate(points) if p.metrics["after"]["accuracy"] >= floor]
    if good:
        chosen = min(good, key=lambda i: points[i].metrics["after"]["packed_bytes"])
    else:
        chosen = max(range(len(points)), key=lambda i: points[i].metrics["after"]["accuracy"])
    curve = [
        {
            spec.sweep.parameter: value,
            "accuracy": point.metrics["after"]["accuracy"],
            "packed_bytes": point.metrics["after"]["packed_bytes"],
            "parameters": point.metrics["after"]["parameters"],
            "nonzero_parameters": point.metrics["after"]["nonzero_parameters"],
            "macs": point.metrics["after"]["macs"],
        }
        for value, point in zip(spec.sweep.values, points, strict=True)
    ]
    result = points[chosen]
    result.metrics["sweep"] = {
        "step": spec.sweep.step,
        "parameter": spec.sweep.parameter,
        "points": curve,
        "chosen": chosen,
        "max_accuracy_drop": spec.sweep.max_accuracy_drop,
        "attribution_passes": sum(p.metrics["attribution"]["passes"] for p in points),
        "shared_scores": sorted(cache),
    }
    return result


def _run_step(
    working: WorkingModel, step: Step, spec: Spec, data: Dataset, monitor: Monitor
) -> dict[str, Any]:
    settings = spec.attribution
    options = ScoringOptions(settings.batch_size, settings.target, spec.seed, working.runtime)
    deeplift = DeepLiftSettings(
        settings.baseline, settings.deeplift_target, settings.channel_score,
        settings.weight_score, settings.explained_classes,
    )  # fmt: skip

    def make_criterion(name: str) -> Criterion:
        return get_criterion(name, options, deeplift)

    name = getattr(step, "criterion", None) or spec.criterion
    if name == "auto" and not isinstance(step, FineTune):
        return apply_auto(working, step, make_criterion, data, spec.seed, monitor)
    return apply_step(working, step, make_criterion(name), data, monitor, spec.seed)


def _splits(model: LoadedModel, data: Dataset, eval_data: Dataset | None, spec: Spec) -> _Splits:
    """Fine-tuning sees all the training part, scoring a seeded subset of it, and the
    evaluation part is used for neither."""
    data = fit_to_model(data, model.input_shape, model.num_classes)
    if eval_data is not None:
        train = data
        evaluation = fit_to_model(eval_data, model.input_shape, model.num_classes)
    else:
        train, evaluation = split(data, spec.evaluation.calibration_fraction, spec.seed)
    calibration = train
    if train.num_samples > spec.attribution.samples:
        calibration, _ = split(train, spec.attribution.samples, spec.seed)
    return _Splits(train, calibration, evaluation)


def _reduction(before: ModelMetrics, after: ModelMetrics) -> dict[str, float]:
    """How many times smaller the compressed model is (> 1 is better); the latency ratio
    comes from the interleaved timing, and only when it is beyond the noise."""
    return {
        "parameters": before.parameters / max(after.parameters, 1),
        "nonzero_parameters": before.nonzero_parameters / max(after.nonzero_parameters, 1),
        "macs": before.macs / max(after.macs, 1),
    }
