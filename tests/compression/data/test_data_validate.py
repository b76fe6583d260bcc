from __future__ import annotations

import pytest
import torch

from compression.data import Dataset, validate_for_model
from compression.data.validate import classes_covered
from compression.errors import InvalidDataset, ShapeMismatch


def make(labels: list[int], sample_shape: tuple[int, ...] = (1, 4, 4)) -> Dataset:
    x = torch.zeros(len(labels), *sample_shape)
    return Dataset(x, torch.tensor(labels), tuple(str(i) for i in range(max(labels) + 1)))


def test_matching_dataset_passes():
    validate_for_model(make([0, 1, 2, 2]), (1, 4, 4), 3)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ShapeMismatch) as caught:
        validate_for_model(make([0, 1]), (3, 4, 4), 2)
    assert caught.value.code == "shape_mismatch"
    assert "(1, 4, 4)" in caught.value.message
    assert "(3, 4, 4)" in caught.value.message


def test_label_out_of_range():
    with pytest.raises(InvalidDataset, match=r"Label 3 is out of range .* 0\.\.2") as caught:
        validate_for_model(make([0, 1, 2, 3]), (1, 4, 4), 3)
    assert caught.value.code == "invalid_dataset"


def test_classes_without_samples_are_allowed_and_counted():
    """The model defines the classes; calibration data often covers only some of them."""
    dataset = make([0, 1, 3, 3])
    validate_for_model(dataset, (1, 4, 4), 1000)
    assert classes_covered(dataset) == 3
