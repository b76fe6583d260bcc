from __future__ import annotations

import pytest
import torch

from compression.data import Dataset, split
from compression.errors import InvalidDataset

# 10 samples of class 0, 6 of class 1, 1 of class 2; x holds each sample's position.
LABELS = [0, 1] * 6 + [0] * 4 + [2]


def make(labels: list[int] = LABELS) -> Dataset:
    x = torch.arange(len(labels), dtype=torch.float32).unsqueeze(1)
    return Dataset(x, torch.tensor(labels), ("a", "b", "c"))


def positions(dataset: Dataset) -> list[int]:
    return [int(v) for v in dataset.x[:, 0]]


def per_class(dataset: Dataset) -> list[int]:
    return torch.bincount(dataset.y, minlength=3).tolist()


@pytest.mark.parametrize(
    ("calibration", "cal_counts", "eval_counts"),
    [(0.5, [5, 3, 0], [5, 3, 1]), (3, [2, 1, 0], [8, 5, 1]), (15, [9, 5, 1], [1, 1, 0])],
)
def test_sizes_are_stratified(calibration, cal_counts, eval_counts):
    cal, evaluation = split(make(), calibration, seed=0)
    assert per_class(cal) == cal_counts
    assert per_class(evaluation) == eval_counts
    assert cal.classes == evaluation.classes == ("a", "b", "c")


def test_disjoint_cover_and_keep_order():
    cal, evaluation = split(make(), 0.3, seed=7)
    assert not set(positions(cal)) & set(positions(evaluation))
    assert sorted(positions(cal) + positions(evaluation)) == list(range(len(LABELS)))
    assert positions(cal) == sorted(positions(cal))
    assert positions(evaluation) == sorted(positions(evaluation))
    for part in (cal, evaluation):
        assert part.y.tolist() == [LABELS[p] for p in positions(part)]


def test_same_seed_reproduces_and_other_seeds_differ():
    first = positions(split(make(), 0.5, seed=1)[0])
    assert positions(split(make(), 0.5, seed=1)[0]) == first
    others = {tuple(positions(split(make(), 0.5, seed=s)[0])) for s in range(2, 6)}
    assert others - {tuple(first)}


@pytest.mark.parametrize(
    ("calibration", "fragment"),
    [
        (0.0, r"in \(0, 1\)"),
        (1.0, r"in \(0, 1\)"),
        (0.01, "0 of 17 samples"),
        (0, "0 of 17 samples"),
        (17, "17 of 17 samples"),
    ],
)
def test_splits_that_would_empty_a_side_are_refused(calibration, fragment):
    with pytest.raises(InvalidDataset, match=fragment):
        split(make(), calibration, seed=0)


@pytest.mark.parametrize(
    ("calibration", "cal_counts", "eval_counts"),
    [(1, [1, 0, 0], [9, 6, 1]), (16, [9, 6, 1], [1, 0, 0])],
)
def test_sizes_too_small_or_large_for_both_sides_stay_proportional(
    calibration, cal_counts, eval_counts
):
    """Classes cannot all appear on both sides; the split is proportional instead of refused."""
    cal, evaluation = split(make(), calibration, seed=0)
    assert per_class(cal) == cal_counts
    assert per_class(evaluation) == eval_counts


def test_calibration_must_be_a_number():
    with pytest.raises(TypeError):
        split(make(), True, seed=0)
