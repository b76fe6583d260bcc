"""Bare safetensors weights plus the name of a built-in architecture.

safetensors holds tensors and nothing else, so it is the safe way to upload a model whose
architecture we already know: the zoo builds the module, the file only fills its weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from compression import zoo
from compression.errors import InvalidModel, ShapeMismatch, UnsupportedFormat
from compression.intake_limits import DEFAULT_LIMITS, IntakeLimits
from compression.io.loaded import LoadedModel
from compression.io.probe import probe_classifier

FLOAT_TYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def load_safetensors(
    path: str,
    architecture: str | None,
    architecture_args: Mapping[str, Any] | None = None,
    limits: IntakeLimits = DEFAULT_LIMITS,
) -> LoadedModel:
    """Build ``architecture`` from the zoo and load the file's weights into it, strictly."""
    if architecture is None:
        known = ", ".join(sorted(zoo.ARCHITECTURES))
        raise InvalidModel(
            f"safetensors files hold only weights; name the architecture too (one of: {known})"
        )
    module, input_shape = zoo.build(architecture, architecture_args, limits)
    try:
        weights = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnsupportedFormat(f"the file is not a readable safetensors file: {exc}") from exc
    _check_against(module.state_dict(), weights, architecture)
    module.load_state_dict(
        {name: t.to(torch.float32) if t.is_floating_point() else t for name, t in weights.items()}
    )
    module.eval()
    num_classes = probe_classifier(module, input_shape)
    return LoadedModel(module, input_shape, num_classes, source=f"zoo:{architecture}")


def _check_against(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], architecture: str
) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise InvalidModel(
            f"the weights do not belong to {architecture} with these arguments: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for name, tensor in expected.items():
        if tuple(found[name].shape) != tuple(tensor.shape):
            raise ShapeMismatch(
                f"weight {name} has shape {tuple(found[name].shape)}, but {architecture} with "
                f"these arguments expects {tuple(tensor.shape)}"
            )
        if tensor.is_floating_point() and found[name].dtype not in FLOAT_TYPES:
            raise InvalidModel(f"weight {name} has dtype {found[name].dtype}; expected floats")
