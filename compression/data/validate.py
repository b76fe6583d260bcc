"""Check that a dataset fits the model it will compress, before any expensive work starts.

Loading only knows the data; these checks need the model's input shape and class count, and
catch the mistakes that would otherwise surface as a crash mid-job or a meaningless accuracy.
"""

from __future__ import annotations

import torch

from compression.data.dataset import Dataset
from compression.errors import InvalidDataset, ShapeMismatch


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
