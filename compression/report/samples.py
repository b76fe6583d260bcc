"""A few samples with their input relevance before and after compression, ready to draw.

The report shows what the model looks at. The same samples, reference and target are used
for the original and the compressed model, so a change between the two maps is the model's,
not the method's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from compression.attribution.baselines import BaselineName
from compression.attribution.input_relevance import input_relevance
from compression.attribution.targets import TargetName
from compression.data import Dataset

log = logging.getLogger(__name__)
SAMPLES_SHOWN = 4


@dataclass(frozen=True)
class SampleMaps:
    """One sample as pictures: the input in [0, 1] ((H, W) grey or (H, W, 3) colour), and the
    relevance of each input position ((H, W)) for the original and the compressed model."""

    image: np.ndarray
    before: np.ndarray
    after: np.ndarray
    label: str
    predicted_before: str
    predicted_after: str


@dataclass(frozen=True)
class RelevanceSamples:
    """The maps, the completeness error of each model on them, or why there are none."""

    samples: list[SampleMaps]
    completeness_before: float | None = None
    completeness_after: float | None = None
    unavailable: str | None = None


def pick_samples(data: Dataset, count: int = SAMPLES_SHOWN) -> Tensor:
    """The first sample of each of the first ``count`` classes met in dataset order, so the
    pictures show different classes and the same ones in every run."""
    seen: dict[int, int] = {}
    for position, label in enumerate(data.y.tolist()):
        seen.setdefault(label, position)
        if len(seen) == count:
            break
    return torch.tensor(sorted(seen.values()), dtype=torch.long)


def relevance_samples(
    original: nn.Module,
    compressed: nn.Module,
    data: Dataset,
    *,
    baseline: BaselineName = "zeros",
    target: TargetName = "logit",
    count: int = SAMPLES_SHOWN,
) -> RelevanceSamples:
    """Input relevance of ``count`` samples of ``data`` for both models.

    A model that DeepLIFT cannot run on (an operator without a rule, a graph that does not
    trace) still gets its report: the maps are left out and the reason is given instead.
    """
    index = pick_samples(data, count)
    try:
        before = input_relevance(original, data, index, baseline=baseline, target=target)
        after = input_relevance(compressed, data, index, baseline=baseline, target=target)
    except Exception as exc:  # the report must not cost the user the compressed model
        log.warning("input relevance unavailable: %s", exc, exc_info=True)
        return RelevanceSamples([], unavailable=f"{type(exc).__name__}: {exc}".splitlines()[0])
    x = data.samples(index)
    names = data.classes
    samples = [
        SampleMaps(
            image=_picture(x[i]),
            before=_positions(before.maps[i]),
            after=_positions(after.maps[i]),
            label=names[int(data.y[index[i]])],
            predicted_before=_name(names, int(before.predicted[i])),
            predicted_after=_name(names, int(after.predicted[i])),
        )
        for i in range(len(index))
    ]
    return RelevanceSamples(samples, before.completeness_error, after.completeness_error)


def _name(names: tuple[str, ...], label: int) -> str:
    return names[label] if label < len(names) else str(label)


def _picture(sample: Tensor) -> np.ndarray:
    """(C, H, W) as grey or RGB, (C, L) as C rows, (F,) as one row; scaled to [0, 1]."""
    values = sample.float()
    if values.dim() == 3 and values.shape[0] == 3:
        values = values.permute(1, 2, 0)
    elif values.dim() == 3:
        values = values.mean(dim=0)
    elif values.dim() == 1:
        values = values[None]
    low, high = float(values.min()), float(values.max())
    return ((values - low) / max(high - low, 1e-12)).numpy()


def _positions(relevance: Tensor) -> np.ndarray:
    """Relevance per position: summed over the channels of an image, one row per channel of
    a signal, one row of features."""
    if relevance.dim() == 3:
        return relevance.sum(dim=0).numpy()
    if relevance.dim() == 1:
        return relevance[None].numpy()
    return relevance.numpy()
