"""Run a freshly loaded model once to learn that it works and how many classes it has."""

from __future__ import annotations

import torch
from torch import nn

from compression.errors import InvalidModel, ShapeMismatch


def probe_classifier(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Return the number of classes; refuse models that are not (batch, classes) classifiers."""
    module.eval()
    try:
        with torch.no_grad():
            output = module(torch.zeros((2, *input_shape)))
    except RuntimeError as exc:
        raise ShapeMismatch(
            f"the model does not run on inputs of shape (batch, {', '.join(map(str, input_shape))})"
            f": {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InvalidModel(
            f"the model must return one (batch, classes) tensor of logits; it returned {shape}"
        )
    if output.shape[1] < 2:
        raise InvalidModel("the model must score at least 2 classes")
    return int(output.shape[1])
