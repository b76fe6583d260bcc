"""Export a (compressed) model to ONNX and to a torch.export archive, and check the ONNX.

The ONNX file is only handed out after onnxruntime reproduced the torch outputs on sample
inputs within a stated tolerance, at two batch sizes so the dynamic batch axis is checked.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from compression.errors import ExportFailed, is_out_of_memory

ONNX_OPSET = 18
ATOL = 1e-4
RTOL = 1e-3


@dataclass(frozen=True)
class OnnxCheck:
    """How closely onnxruntime matched torch: |ort - torch| <= atol + rtol * |torch|."""

    max_abs_diff: float
    atol: float
    rtol: float
    opset: int


def _batch_dim() -> dict[int, torch.export.Dim]:
    return {0: torch.export.Dim("batch", min=1, max=65536)}


def export_program(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    try:
        return torch.export.export(module.eval(), (example,), dynamic_shapes=(_batch_dim(),))
    except Exception as exc:
        if is_out_of_memory(exc):  # the task's memory limit, not a bad file
            raise
        raise ExportFailed(f"torch.export could not trace the model: {exc}") from exc


def export_pt2(module: nn.Module, example: torch.Tensor, path: str | Path) -> None:
    """Write a torch.export archive with a dynamic batch dimension (example batch >= 2)."""
    torch.export.save(export_program(module, example), str(path))


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path) -> OnnxCheck:
    """Write an ONNX file, then prove onnxruntime reproduces the torch outputs."""
    program = export_program(module, example)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program, (example,), dynamo=True, opset_version=ONNX_OPSET, verbose=False
            )
            onnx_program.save(str(path))
    except Exception as exc:
        if is_out_of_memory(exc):  # the task's memory limit, not a bad file
            raise
        raise ExportFailed(f"ONNX export failed: {exc}") from exc
    return check_onnx(module, example, path)


def check_onnx(module: nn.Module, example: torch.Tensor, path: str | Path) -> OnnxCheck:
    """Compare onnxruntime with torch on the example batch and on a single sample."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    worst = 0.0
    for batch in (example, example[:1]):
        with torch.no_grad():
            expected = module.eval()(batch).numpy()
        (actual,) = session.run(None, {input_name: batch.numpy()})
        if actual.shape != expected.shape:
            raise ExportFailed(f"ONNX output shape {actual.shape} != torch {expected.shape}")
        diff = np.abs(actual - expected)
        worst = max(worst, float(diff.max()))
        if np.any(diff > ATOL + RTOL * np.abs(expected)):
            raise ExportFailed(
                f"onnxruntime differs from torch by up to {float(diff.max()):.3g} "
                f"(tolerance {ATOL} + {RTOL} x |output|)"
            )
    return OnnxCheck(worst, ATOL, RTOL, ONNX_OPSET)
