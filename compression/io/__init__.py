"""Model intake (.pt2, ONNX, safetensors + zoo architecture) and export (ONNX, .pt2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from compression.intake_limits import DEFAULT_LIMITS, IntakeLimits
from compression.io.detect import ModelFormat, detect_model_format
from compression.io.export import export_onnx, export_pt2
from compression.io.loaded import LoadedModel
from compression.io.onnx_intake import load_onnx
from compression.io.pt2_intake import load_pt2
from compression.io.safetensors_intake import load_safetensors


def load_model(
    path: str,
    *,
    architecture: str | None = None,
    architecture_args: Mapping[str, Any] | None = None,
    limits: IntakeLimits = DEFAULT_LIMITS,
) -> LoadedModel:
    """Load a user's model file, whatever its accepted format, without unpickling anything
    and without allocating beyond ``limits``."""
    model_format = detect_model_format(path)
    if model_format is ModelFormat.PT2:
        return load_pt2(path, limits)
    if model_format is ModelFormat.SAFETENSORS:
        return load_safetensors(path, architecture, architecture_args, limits)
    return load_onnx(path, limits)


__all__ = [
    "IntakeLimits",
    "LoadedModel",
    "ModelFormat",
    "detect_model_format",
    "export_onnx",
    "export_pt2",
    "load_model",
]
