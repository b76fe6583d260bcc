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
        reshaped = dataset.x.reshape(-1, *shape)
        dataset = Dataset(reshaped, dataset.y, dataset.classes, dataset.normalization)
    validate_for_model(dataset, shape, num_classes)
    return dataset


def validate_for_model(dataset: Dataset, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Raise unless samples have ``input_shape`` and every label is a class of the model.

    The model defines the classes; the data need not cover them all (a 500-image calibration
    set for a 1000-class model is normal), so accuracy is over the samples given and the
    report says how many classes the data covers (:func:`classes_covered`).
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


def classes_covered(*datasets: Dataset) -> int:
    """How many distinct classes have at least one sample in any of ``datasets``."""
    return int(torch.unique(torch.cat([dataset.y for dataset in datasets])).numel())
