"""The ONNX files a job hands out, each checked, and what they do in onnxruntime.

- ``model.onnx``: the compressed model in standard ONNX with its compression kept (integer,
  codebook and sparse weights decoded by standard operators; ``integer_onnx``);
- ``model.fp32.onnx``: the same model with plain float32 weights, for tools that cannot take
  integer weights or model-local functions;
- ``model.int8.onnx`` with an ``int8_runtime`` step: int8 weights and activations (QDQ).

Both float-output files must reproduce the torch model in onnxruntime within the tolerance
of ``compression.io.export.check_onnx``. Should the integer rewrite fail for a model (an
operator pattern it does not know), ``model.onnx`` is the float32 file and
``metrics.onnx.integer_fallback`` says why: the job still delivers. Latency is measured in
onnxruntime as in torch: original and delivered model timed alternately, median and p10/p90,
thread count stated.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import onnx
import torch

from compression.data import Dataset
from compression.deploy.int8_runtime import quantize_int8
from compression.deploy.integer_onnx import (
    IntegerOnnxReport,
    export_fp32,
    finish_integer,
    rewrite_integer,
)
from compression.deploy.onnx_decoders import OPSET
from compression.deploy.ort_measure import (
    all_threads,
    compare_ort_latency,
    ort_accuracy,
    session,
)
from compression.encoding import LayerEncoding
from compression.errors import ExportFailed
from compression.io import LoadedModel
from compression.io.export import check_onnx
from compression.progress import Monitor, within
from jobspec import Int8Runtime, Spec

DELIVERED = "model.onnx"
FLOAT32 = "model.fp32.onnx"
INT8 = "model.int8.onnx"
INT8_BATCHES = (1, 32)
log = logging.getLogger(__name__)


def export_original(original: LoadedModel, folder: Path) -> Path:
    """The original model as ONNX in ``folder`` (weights in a data file beside it), for the
    onnxruntime comparison. A job writes it before its first step: exporting is the largest
    passing cost of a job (VGG-11-BN: 1.1 GiB beyond the proto), and then only the original
    is in memory, not also its compressed copy, scores and sessions."""
    path = folder / "original.onnx"
    onnx.save(  # weights in a data file: no serialized copy of them beside the proto
        export_fp32(original.module.eval(), original.example_input()), path,
        save_as_external_data=True, location="original.onnx.data",
    )  # fmt: skip
    return path


def deliver_onnx(
    original: Path,
    compressed: LoadedModel,
    encodings: dict[str, LayerEncoding],
    masks: dict[str, torch.Tensor],
    out: Path,
    spec: Spec,
    calibration: Dataset,
    evaluation: Dataset,
    monitor: Monitor,
) -> dict[str, Any]:
    """Write the ONNX deliverables into ``out``; return their report (for ``metrics``).
    ``original`` is the original model's ONNX file (``export_original``)."""
    module, example = compressed.module.eval(), compressed.example_input()
    fp32: onnx.ModelProto | None = export_fp32(module, example)
    onnx.save(fp32, out / FLOAT32)
    monitor.report(0.2)
    fallback = None
    try:
        rewritten = rewrite_integer(fp32, module, encodings, masks)
        fp32 = None  # not held while onnxruntime decodes every weight (VGG: 0.25 GiB)
        integer, report = finish_integer(rewritten, module)
        del rewritten
        onnx.save(integer, out / DELIVERED)  # files before checks: a check's session is
        del integer  # never held beside a proto
    except ExportFailed as exc:
        fp32 = None
        report, fallback = _deliver_float32(out, encodings, masks, exc)
    monitor.report(0.3)
    fp32_check = check = check_onnx(module, example, out / FLOAT32)
    if fallback is None:
        try:
            check = check_onnx(module, example, out / DELIVERED)
        except ExportFailed as exc:
            report, fallback = _deliver_float32(out, encodings, masks, exc)
    monitor.report(0.45)
    threads = torch.get_num_threads()
    delivered = session(out / DELIVERED, threads)  # first: loading it decodes its weights,
    baseline = session(original, threads)  # a passing peak, before the original's are held
    latency = compare_ort_latency(
        baseline, delivered, compressed.input_shape, spec.evaluation.latency_batch, threads,
        spec.evaluation.latency_repeats, progress=within(monitor.report, 0.45, 0.6),
    )  # fmt: skip
    monitor.report(0.6)
    metrics: dict[str, Any] = {
        "onnx": {
            "opset": OPSET,
            "bytes": {
                DELIVERED: (out / DELIVERED).stat().st_size,
                FLOAT32: (out / FLOAT32).stat().st_size,
            },
            "max_abs_diff": check.max_abs_diff,
            "fp32_max_abs_diff": fp32_check.max_abs_diff,
            "atol": check.atol,
            "rtol": check.rtol,
            "weight_decode": report.weight_decode,
            "integer_fallback": fallback,
            "layers": {name: asdict(layer) for name, layer in report.layers.items()},
            "float_layers": report.float_layers,
        },
        "onnxruntime_latency": latency.as_dict(),
    }
    if spec.int8_runtime is not None:
        metrics["int8_runtime"] = _int8(
            out, compressed.input_shape, spec.int8_runtime, spec, calibration, evaluation
        )
    monitor.report(1.0)
    return metrics


def _deliver_float32(
    out: Path, encodings: dict[str, LayerEncoding], masks: dict[str, torch.Tensor],
    exc: ExportFailed,
) -> tuple[IntegerOnnxReport, str]:  # fmt: skip
    """Never lose the job: hand out float32 weights as ``model.onnx`` and say why."""
    log.warning("integer ONNX not delivered: %s", exc.message)
    shutil.copyfile(out / FLOAT32, out / DELIVERED)
    return IntegerOnnxReport({}, sorted(set(encodings) | set(masks)), "cast"), exc.message


def _int8(
    out: Path,
    input_shape: tuple[int, ...],
    step: Int8Runtime,
    spec: Spec,
    calibration: Dataset,
    evaluation: Dataset,
) -> dict[str, Any]:
    """Quantize, then compare with the float32 ONNX in onnxruntime: accuracy on the
    evaluation split, latency at batch 1 and 32 with one thread and with every thread."""
    name = session(out / FLOAT32, 1).get_inputs()[0].name
    quantize_int8(out / FLOAT32, out / INT8, name, calibration, step)
    everything = all_threads()
    accuracy = {
        label: ort_accuracy(session(out / path, everything), evaluation, spec.evaluation.batch_size)
        for label, path in (("fp32", FLOAT32), ("int8", INT8))
    }
    latency = [
        compare_ort_latency(
            session(out / FLOAT32, threads), session(out / INT8, threads), input_shape, batch,
            threads, spec.evaluation.latency_repeats,
        ).as_dict()
        for batch in INT8_BATCHES
        for threads in sorted({1, everything})
    ]  # fmt: skip
    return {
        "settings": step.model_dump(),
        "bytes": (out / INT8).stat().st_size,
        "calibration_samples": min(step.calibration_samples, calibration.num_samples),
        "accuracy_fp32": accuracy["fp32"],
        "accuracy_int8": accuracy["int8"],
        "accuracy_drop": accuracy["fp32"] - accuracy["int8"],
        "latency": latency,
    }
