"""Check that a dataset fits the model it will compress, before any expensive work starts.

Loading only knows the data; these checks need the model's input shape and class count, and
catch the mistakes that would otherwise surface as a crash mid-job or a meaningless accuracy.
"""

from __future__ import annotations

import torch

from compression.data.dataset import Dataset
from compression.errors import InvalidDataset, ShapeMismatch


def fit_to_model(dataset: Dataset, input_shape: tuple[int, ...], num_classes: int) -> Dataset:
    """The dataset shaped for the model, validated.

    Shapes that differ only by singleton axes are the same data ((H, W) grey images for a
    (1, H, W) model, (1, L) signals for an (L,) model), so they are reshaped, never copied.
    """
    shape = tuple(input_shape)
    squeezed = tuple(size for size in dataset.sample_shape if size != 1)
    if dataset.sample_shape != shape and squeezed == tuple(s for s in shape if s != 1):
        dataset = Dataset(dataset.x.reshape(-1, *shape), dataset.y, dataset.classes)
    validate_for_model(dataset, shape, num_classes)
    return dataset


def validate_for_model(dataset: Dataset, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise unless samples have ``input_shape`` and every class ``0..num_classes-1`` has data.

    A class without samples cannot be attributed or evaluated, and usually means the labels
    were shifted or a folder was left out, so it is an error rather than a warning.
    """
    if dataset.sample_shape != tuple(input_shape):
        raise ShapeMismatch(
            f"Samples have shape {dataset.sample_shape} but the model expects "
            f"{tuple(input_shape)} (without the batch axis)."
        )
    largest = int(dataset.y.max())
    if largest >= num_classes:
        raise InvalidDataset(
            f"Label {largest} is out of range for a model with {num_classes} classes; labels "
            f"must lie in 0..{num_classes - 1}."
        )
    counts = torch.bincount(dataset.y, minlength=num_classes)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise InvalidDataset(
            f"Classes {empty} have no samples; every class of the model needs at least one. "
            f"The dataset names {dataset.num_classes} classes; image folders are numbered in "
            "sorted name order, so a missing folder shifts every later label."
        )
