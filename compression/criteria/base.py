"""The one interface every importance criterion implements.

A criterion looks at a model (and, if it needs to, calibration data) and returns, for each
conv or linear layer, a non-negative score per output channel (a filter or a neuron) and per
weight. Structured pruning ranks channels, unstructured pruning ranks weights, and the later
weight-sharing and mixed-precision steps weight their decisions by the same scores: one seam,
every consumer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from compression.data import Dataset
from compression.errors import InvalidSpec
from compression.progress import Monitor
from compression.runtime import CPU, Runtime


@dataclass(frozen=True)
class LayerScore:
    """Importance of one layer: ``channels`` has one entry per output channel, ``weights``
    the layer's weight shape (None when per-weight scores were not asked for). Larger means
    more important; all entries are >= 0."""

    channels: torch.Tensor
    weights: torch.Tensor | None

    @property
    def total(self) -> float:
        return float(self.channels.sum())


Scores = dict[str, LayerScore]


@dataclass(frozen=True)
class ScoringOptions:
    """Shared knobs: which samples, in what batches, explained for which class, and where
    the work runs (the criterion moves the model to ``runtime.device``; scores come back on
    the CPU)."""

    batch_size: int = 128
    target: str = "label"  # "label" (the true class) or "predicted"
    seed: int = 0
    runtime: Runtime = CPU


class Criterion(ABC):
    name: ClassVar[str]
    needs_data: ClassVar[bool] = True

    def __init__(self, options: ScoringOptions | None = None) -> None:
        self.options = options or ScoringOptions()

    @abstractmethod
    def score(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        data: Dataset | None,
        monitor: Monitor | None = None,
        per_weight: bool = True,
    ) -> Scores:
        """Score every layer in ``layers`` (names to modules of ``model``); per-weight scores
        only when ``per_weight`` (they can cost more than channel scores)."""


def channel_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a per-weight tensor over everything but the output channel (dim 0)."""
    return values.reshape(values.shape[0], -1).sum(dim=1)


def targets(logits: torch.Tensor, labels: torch.Tensor, target: str) -> torch.Tensor:
    """The class each sample is explained for."""
    if target == "label":
        return labels
    if target == "predicted":
        return logits.argmax(dim=1)
    raise ValueError(f"unknown target {target!r}")


def require_data(data: Dataset | None, criterion: str) -> Dataset:
    if data is None or data.num_samples == 0:
        raise InvalidSpec(f"the {criterion} criterion needs calibration data")
    return data


@contextmanager
def gradients_enabled(parameters: list[torch.Tensor]) -> Iterator[None]:
    """Let autograd reach these weights for the block, then restore their flags."""
    flags = [parameter.requires_grad for parameter in parameters]
    try:
        with torch.enable_grad():
            for parameter in parameters:
                parameter.requires_grad_(True)
            yield
    finally:
        for parameter, flag in zip(parameters, flags, strict=True):
            parameter.requires_grad_(flag)
