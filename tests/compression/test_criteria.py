"""Criteria give the scores worked out by hand on a two-layer network."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from compression.criteria import ScoringOptions, get_criterion
from compression.data import Dataset
from compression.errors import InvalidSpec


@pytest.fixture
def two_layer() -> tuple[nn.Module, dict[str, nn.Module], Dataset]:
    fc1, fc2 = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
        fc2.weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    model = nn.Sequential(fc1, nn.ReLU(), fc2)
    data = Dataset(torch.tensor([[1.0, 1.0]]), torch.tensor([0]), ("a", "b"))
    return model, {"fc1": fc1, "fc2": fc2}, data


def test_l1_scores_are_weight_magnitudes(two_layer) -> None:
    model, layers, _ = two_layer
    scores = get_criterion("l1").score(model, layers, None)
    assert torch.equal(scores["fc1"].weights, torch.tensor([[1.0, 2.0], [3.0, 1.0]]))
    assert torch.equal(scores["fc1"].channels, torch.tensor([3.0, 4.0]))
    assert torch.equal(scores["fc2"].channels, torch.tensor([2.0, 1.0]))


def test_taylor_matches_the_hand_derivation(two_layer) -> None:
    # x = (1, 1): fc1 gives (3, 2), both positive, so ReLU passes them; logits = (1, 2).
    # Cross-entropy for label 0: dL/dlogits = softmax - onehot = (-s, s), s = sigmoid(1).
    # dL/d(fc1 out) = fc2.W^T (-s, s) = (-s, 2s).
    model, layers, data = two_layer
    s = 1 / (1 + math.exp(-1))

    scores = get_criterion("taylor").score(model, layers, data)

    assert torch.allclose(scores["fc2"].channels, torch.tensor([1 * s, 2 * s]))
    assert torch.allclose(scores["fc1"].channels, torch.tensor([3 * s, 2 * 2 * s]))
    # per weight |w * dL/dw| with dL/dW1 = (-s, 2s)^T (1, 1)
    assert torch.allclose(scores["fc1"].weights, torch.tensor([[s, 2 * s], [6 * s, 2 * s]]))
    assert torch.allclose(scores["fc2"].weights, torch.tensor([[3 * s, 2 * s], [0.0, 2 * s]]))


def test_taylor_averages_over_batches(two_layer) -> None:
    model, layers, data = two_layer
    doubled = Dataset(data.x.repeat(5, 1), data.y.repeat(5), data.classes)
    one = get_criterion("taylor").score(model, layers, data)
    many = get_criterion("taylor", ScoringOptions(batch_size=2)).score(model, layers, doubled)
    for name in layers:
        assert torch.allclose(one[name].channels, many[name].channels)
        assert torch.allclose(one[name].weights, many[name].weights)


def test_random_is_seeded(two_layer) -> None:
    model, layers, _ = two_layer
    first = get_criterion("random", ScoringOptions(seed=3)).score(model, layers, None)
    again = get_criterion("random", ScoringOptions(seed=3)).score(model, layers, None)
    other = get_criterion("random", ScoringOptions(seed=4)).score(model, layers, None)
    assert torch.equal(first["fc1"].weights, again["fc1"].weights)
    assert not torch.equal(first["fc1"].weights, other["fc1"].weights)
    assert first["fc2"].channels.shape == (2,) and bool((first["fc2"].channels >= 0).all())


def test_data_criteria_refuse_to_run_without_data(two_layer) -> None:
    model, layers, _ = two_layer
    with pytest.raises(InvalidSpec, match="taylor criterion needs calibration data"):
        get_criterion("taylor").score(model, layers, None)
    with pytest.raises(InvalidSpec, match="unknown criterion"):
        get_criterion("magic")
