"""The in-memory dataset every engine stage consumes, whatever format it was uploaded in.

Construction checks every invariant the engine relies on (dtypes, shapes, label range,
finite values), so a ``Dataset`` that exists is usable and later stages need not re-check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from compression.errors import InvalidDataset


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples ``x`` (float32; (N, F), (N, C, L) or (N, C, H, W)), labels ``y`` (int64, (N,)),
    class names.

    ``classes[i]`` names label ``i``; labels lie in ``0..len(classes) - 1``.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_samples(self.x)
        _check_labels(self.y, self.x.shape[0], self.classes)

    @property
    def num_samples(self) -> int:
        return self.x.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: torch.Tensor) -> Dataset:
        """The samples at ``index`` (integer positions or a boolean mask), same class names."""
        return Dataset(self.x[index], self.y[index], self.classes)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive ``(x, y)`` batches in dataset order, so every pass sees the same data."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, self.num_samples, batch_size):
            yield self.x[start : start + batch_size], self.y[start : start + batch_size]


def _check_samples(x: torch.Tensor) -> None:
    if x.dtype != torch.float32:
        raise InvalidDataset(f"Samples must be float32, got {x.dtype}.")
    if x.ndim not in (2, 3, 4):
        raise InvalidDataset(
            "Samples must have shape (N, features), (N, C, L) or (N, C, H, W), "
            f"got {tuple(x.shape)}."
        )
    if x.shape[0] == 0:
        raise InvalidDataset("The dataset has no samples; upload at least one.")
    if not torch.isfinite(x).all():
        nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        raise InvalidDataset(
            f"Samples hold {nan} NaN and {inf} infinite values (as float32); replace or drop them."
        )


def _check_labels(y: torch.Tensor, num_samples: int, classes: tuple[str, ...]) -> None:
    if y.dtype != torch.int64 or y.ndim != 1:
        raise InvalidDataset(f"Labels must be a 1-D int64 tensor, got {y.dtype} {tuple(y.shape)}.")
    if y.shape[0] != num_samples:
        raise InvalidDataset(f"There are {num_samples} samples but {y.shape[0]} labels.")
    if len(set(classes)) != len(classes):
        raise InvalidDataset(f"Class names must be unique, got {list(classes)}.")
    if int(y.min()) < 0:
        raise InvalidDataset(
            f"Labels must be class indices >= 0, found {int(y.min())}; map them to 0..K-1."
        )
    if int(y.max()) >= len(classes):
        raise InvalidDataset(
            f"Label {int(y.max())} has no class name: only {len(classes)} names are given."
        )
