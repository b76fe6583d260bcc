"""``auto`` keeps the criterion whose pruned model is best on held-out calibration data."""

from __future__ import annotations

import torch
from torch import nn

from compression import Spec, compress
from compression.data import Dataset
from compression.io import LoadedModel


def _known_case() -> tuple[LoadedModel, Dataset]:
    """Class = sign of feature 1. Hidden neuron 0 has the largest weights but is dead on all
    data; neuron 3 is large but unused by the classifier; neurons 1 and 2 carry the class.
    Pruning half the hidden neurons by magnitude keeps 0 and 3 (chance accuracy); DeepLIFT
    and Taylor give 0 and 3 no relevance and keep 1 and 2 (perfect accuracy)."""
    fc1, fc2 = nn.Linear(4, 4), nn.Linear(4, 2)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[10.0, 0, 0, 0], [0, 1, 0, 0], [0, -1, 0, 0], [0, 0, 2, 0]]))
        fc1.bias.copy_(torch.tensor([-100.0, 0, 0, 0]))
        fc2.weight.copy_(torch.tensor([[0.0, -1, 1, 0], [0, 1, -1, 0]]))
        fc2.bias.zero_()
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(400, 4, generator=generator) * 2 - 1
    x[:, 1] = torch.where(x[:, 1] >= 0, 1.0, -1.0)
    y = (x[:, 1] > 0).long()
    model = nn.Sequential(fc1, nn.ReLU(), fc2).eval()
    return LoadedModel(model, (4,), 2, "test"), Dataset(x, y, ("neg", "pos"))


def test_auto_picks_the_criterion_that_wins_on_held_out_data() -> None:
    model, data = _known_case()
    spec = Spec.model_validate(
        {"steps": [{"type": "prune_filters", "ratio": 0.5}], "criterion": "auto",
         "evaluation": {"latency_repeats": 3}}
    )  # fmt: skip

    result = compress(model, data, spec)

    report = result.metrics["steps"][0]
    assert report["criterion"] == "auto"
    held_out = report["auto"]["holdout_accuracy"]
    assert held_out["deeplift"] == 1.0 and held_out["taylor"] == 1.0
    assert held_out["l1"] < 0.7
    assert report["auto"]["winner"] == "deeplift"  # ties go to the preferred candidate
    assert report["auto"]["lead"] == 0.0
    assert report["auto"]["holdout_samples"] == 100
    assert result.metrics["after"]["accuracy"] == 1.0
    kept = result.model.module[0].weight
    assert torch.equal(kept, torch.tensor([[0.0, 1, 0, 0], [0, -1, 0, 0]]))


def test_magnitude_alone_fails_the_known_case() -> None:
    model, data = _known_case()
    spec = Spec.model_validate(
        {"steps": [{"type": "prune_filters", "ratio": 0.5}], "criterion": "l1",
         "evaluation": {"latency_repeats": 3}}
    )  # fmt: skip
    assert compress(model, data, spec).metrics["after"]["accuracy"] < 0.7
