"""A statically quantized model for onnxruntime: int8 weights *and* activations (QDQ).

Smaller files do not make a model faster; integer arithmetic does. onnxruntime's static
quantization inserts QuantizeLinear/DequantizeLinear pairs around Conv, Gemm, MatMul and
friends, with activation ranges taken from calibration runs, and at load time fuses each
DQ -> op -> Q group into an integer kernel (QLinearConv, QGemm...). Calibration uses the
job's own calibration split, never the evaluation data; accuracy and speed are then measured
in onnxruntime against the float32 model (``deliverables``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from compression.data import Dataset
from compression.errors import ExportFailed
from jobspec import Int8Runtime

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
CALIBRATION_BATCH = 32


class _Batches(CalibrationDataReader):
    """Feeds the calibration samples to onnxruntime's calibrator, a batch at a time."""

    def __init__(self, input_name: str, data: Dataset) -> None:
        self.batches = (
            {input_name: x.numpy().astype(np.float32)} for x, _ in data.batches(CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def quantize_int8(
    fp32_path: Path, out_path: Path, input_name: str, calibration: Dataset, step: Int8Runtime
) -> None:
    """Write the QDQ int8 model of ``fp32_path`` to ``out_path``, calibrated on the first
    ``step.calibration_samples`` samples of ``calibration``."""
    samples = calibration.subset(slice(0, step.calibration_samples))
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        source = fp32_path
        with _quiet():
            try:  # shape inference + graph optimizations, as onnxruntime recommends
                quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
                source = prepared
            except Exception:
                logging.getLogger(__name__).info("int8: pre-processing skipped", exc_info=True)
            try:
                quantize_static(
                    str(source), str(out_path), _Batches(input_name, samples),
                    quant_format=QuantFormat.QDQ, per_channel=step.per_channel,
                    reduce_range=step.reduce_range, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=METHODS[step.calibration_method],
                    extra_options={"CalibTensorRangeSymmetric": False},
                )  # fmt: skip
            except Exception as exc:
                raise ExportFailed(
                    f"onnxruntime could not quantize the model to int8: {exc}"
                ) from exc


@contextlib.contextmanager
def _quiet():
    """onnxruntime's quantization tools log freely; keep the worker log readable (their
    logging only: sys.stdout belongs to the whole process and is left alone)."""
    quantization_log = logging.getLogger("onnxruntime.quantization")
    level = quantization_log.level
    quantization_log.setLevel(logging.ERROR)
    root_level = logging.getLogger().level
    try:
        yield
    finally:
        quantization_log.setLevel(level)
        logging.getLogger().setLevel(root_level)
