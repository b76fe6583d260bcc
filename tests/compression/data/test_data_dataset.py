from __future__ import annotations

import pytest
import torch

from compression.data import Dataset
from compression.errors import InvalidDataset


def make(n: int = 5) -> Dataset:
    x = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
    return Dataset(x, torch.tensor([0, 1, 2, 1, 0][:n]), ("a", "b", "c"))


def test_properties():
    dataset = make()
    assert dataset.num_samples == 5
    assert dataset.num_classes == 3
    assert dataset.sample_shape == (2,)


def test_subset_by_positions_and_mask():
    dataset = make()
    picked = dataset.subset(torch.tensor([3, 0]))
    assert picked.x.tolist() == [[6.0, 7.0], [0.0, 1.0]]
    assert picked.y.tolist() == [1, 0]
    assert picked.classes == ("a", "b", "c")
    masked = dataset.subset(dataset.y == 1)
    assert masked.x.tolist() == [[2.0, 3.0], [6.0, 7.0]]


def test_batches_are_consecutive_and_cover_everything():
    batches = list(make().batches(2))
    assert [y.tolist() for _, y in batches] == [[0, 1], [2, 1], [0]]
    assert [x[:, 0].tolist() for x, _ in batches] == [[0.0, 2.0], [4.0, 6.0], [8.0]]
    with pytest.raises(ValueError, match="at least 1"):
        next(make().batches(0))


@pytest.mark.parametrize(
    ("x", "y", "classes", "fragment"),
    [
        (torch.zeros(2, 2, dtype=torch.float64), torch.tensor([0, 0]), ("a",), "float32"),
        (torch.zeros(2, 1, 2, 2, 2), torch.tensor([0, 0]), ("a",), "(N, C, H, W)"),
        (torch.zeros(2, 2), torch.tensor([0, 0], dtype=torch.int32), ("a",), "int64"),
        (torch.zeros(2, 2), torch.tensor([0, 0]), ("a", "a"), "unique"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64), ("a",), "no samples"),
        (torch.zeros(2, 2), torch.tensor([0, 1]), ("a",), "Label 1 has no class name"),
    ],
)
def test_construction_refuses_broken_data(x, y, classes, fragment):
    with pytest.raises(InvalidDataset, match=fragment):
        Dataset(x, y, classes)
