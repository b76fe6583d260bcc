"""Split a dataset into a calibration part (for attribution) and an evaluation part.

Relevance measured on the same samples that score the compressed model would flatter it, so
the two parts are disjoint. The split is stratified so that every class with at least two
samples is both attributed and evaluated where the sizes allow it (otherwise classes get
their proportional share and may fall on one side), and seeded so a job can be reproduced.
"""

from __future__ import annotations

import torch

from compression.data.dataset import Dataset
from compression.errors import InvalidDataset


def split(dataset: Dataset, calibration: int | float, seed: int) -> tuple[Dataset, Dataset]:
    """Return ``(calibration, evaluation)`` subsets, each in the original sample order.

    ``calibration`` is a sample count, or a fraction of the dataset in (0, 1).
    """
    wanted = _calibration_size(calibration, dataset.num_samples)
    counts = torch.bincount(dataset.y, minlength=dataset.num_classes).tolist()
    per_class = _allocate(wanted, counts)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.zeros(dataset.num_samples, dtype=torch.bool)
    for label, take in enumerate(per_class):
        members = (dataset.y == label).nonzero().flatten()
        picked = members[torch.randperm(len(members), generator=generator)[:take]]
        chosen[picked] = True
    return dataset.subset(chosen), dataset.subset(~chosen)


def _calibration_size(calibration: int | float, total: int) -> int:
    if isinstance(calibration, bool) or not isinstance(calibration, int | float):
        raise TypeError(f"calibration must be a count or a fraction, got {calibration!r}")
    if isinstance(calibration, float):
        if not 0 < calibration < 1:
            raise InvalidDataset(f"A calibration fraction must lie in (0, 1), got {calibration}.")
        calibration = round(calibration * total)
    if not 0 < calibration < total:
        raise InvalidDataset(
            f"A calibration set of {calibration} of {total} samples would leave the calibration "
            "or the evaluation set empty."
        )
    return calibration


def _allocate(wanted: int, counts: list[int]) -> list[int]:
    """Calibration samples per class: proportional, with at least one on each side per class
    when ``wanted`` leaves room for that (many classes with few samples each often do not).

    Classes with one sample may go to either side. Starting from the rounded-down quota, the
    remainder moves one sample at a time to the class furthest from its exact quota.
    """
    total = sum(counts)
    quota = [wanted * count / total for count in counts]
    low = [1 if count >= 2 else 0 for count in counts]
    high = [count - 1 if count >= 2 else count for count in counts]
    if not sum(low) <= wanted <= sum(high):
        low, high = [0] * len(counts), list(counts)
    take = [min(max(int(q), lo), hi) for q, lo, hi in zip(quota, low, high, strict=True)]
    while (missing := wanted - sum(take)) != 0:
        step = 1 if missing > 0 else -1
        movable = [c for c in range(len(counts)) if low[c] <= take[c] + step <= high[c]]
        label = max(movable, key=lambda c: step * (quota[c] - take[c]))
        take[label] += step
    return take
