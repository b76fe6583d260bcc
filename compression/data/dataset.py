"""The in-memory dataset every engine stage consumes, whatever format it was uploaded in.

Construction checks every invariant the engine relies on (dtypes, shapes, label range,
finite values), so a ``Dataset`` that exists is usable and later stages need not re-check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from compression.data.encoded_images import EncodedImages
from compression.data.preprocessing import Normalization
from compression.errors import InvalidDataset


@dataclass(frozen=True, eq=False)
class Dataset:
    """Samples ``x``, labels ``y`` (int64, (N,)), class names, and how a batch of samples
    becomes model input.

    ``x`` is float32 ((N, F), (N, C, L) or (N, C, H, W)), used as it is, or uint8 images
    (N, C, H, W), in memory or :class:`EncodedImages` decoded a batch at a time; uint8 stays
    uint8 until a batch is formed (:meth:`batches`, :meth:`samples`), where ``normalization``
    scales it to [0, 1] and applies the per-channel mean/std.
    ``classes[i]`` names label ``i``; labels lie in ``0..len(classes) - 1``.
    """

    x: torch.Tensor | EncodedImages
    y: torch.Tensor
    classes: tuple[str, ...]
    normalization: Normalization = field(default_factory=Normalization)

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
        return Dataset(self.x[index], self.y[index], self.classes, self.normalization)

    def samples(self, index: torch.Tensor | slice) -> torch.Tensor:
        """Model input for the samples at ``index``, as one float batch."""
        part = self.x[index]
        return self.normalization(part.read() if isinstance(part, EncodedImages) else part)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive ``(x, y)`` batches in dataset order, so every pass sees the same data;
        only the current batch is decoded and converted to float."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, self.num_samples, batch_size):
            window = slice(start, start + batch_size)
            yield self.samples(window), self.y[window]

    def mean_sample(self, batch_size: int = 256) -> torch.Tensor:
        """The mean model input, (1, *sample_shape), accumulated batch by batch."""
        total = torch.zeros((1, *self.sample_shape), dtype=torch.float64)
        for x, _ in self.batches(batch_size):
            total += x.sum(dim=0, keepdim=True, dtype=torch.float64)
        return (total / self.num_samples).float()


def _check_samples(x: torch.Tensor | EncodedImages) -> None:
    if x.dtype == torch.uint8:
        if x.ndim != 4 or x.shape[0] == 0:
            raise InvalidDataset(f"uint8 samples must be (N, C, H, W) images, got {x.shape}.")
        return
    if x.dtype != torch.float32:
        raise InvalidDataset(f"Samples must be float32 or uint8 images, got {x.dtype}.")
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
