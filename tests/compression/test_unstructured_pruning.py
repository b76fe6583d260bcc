"""Unstructured pruning hits its sparsity exactly and removes the lowest-scored weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compression.criteria import get_criterion
from compression.errors import InvalidSpec
from compression.layers import select_layers
from compression.pruning.unstructured import prune_weights


@pytest.fixture
def layers() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "conv": nn.Conv2d(3, 5, 3),
        "fc1": nn.Linear(37, 23),
        "fc2": nn.Linear(23, 7),
    }


@pytest.mark.parametrize("sparsity", [0.5, 0.8, 0.9, 0.95])
def test_each_layer_reaches_its_target_within_one_weight(layers, sparsity: float) -> None:
    names = select_layers(layers, "prune_weights", ["linear"])
    assert names == ["fc1", "fc2"]
    scores = get_criterion("l1").score(nn.Sequential(), layers, None)
    masks = prune_weights(layers, scores, names, sparsity, "layer")
    for name in names:
        weight = layers[name].weight
        zeros = int((weight == 0).sum())
        assert abs(zeros - sparsity * weight.numel()) <= 1
        assert torch.equal(masks[name], weight != 0)
    assert int((layers["conv"].weight == 0).sum()) == 0


def test_global_scope_counts_across_layers_and_cuts_smallest(layers) -> None:
    names = ["conv", "fc1", "fc2"]
    before = torch.cat([layers[n].weight.detach().abs().flatten() for n in names])
    scores = get_criterion("l1").score(nn.Sequential(), layers, None)
    prune_weights(layers, scores, names, 0.7, "global")
    after = torch.cat([layers[n].weight.detach().flatten() for n in names])
    assert int((after == 0).sum()) == round(0.7 * before.numel())
    threshold = before.sort().values[round(0.7 * before.numel()) - 1]
    assert bool((before[after == 0] <= threshold).all())
    assert bool((before[after != 0] >= threshold).all())


def test_existing_zeros_stay_zero(layers) -> None:
    fc1 = layers["fc1"]
    with torch.no_grad():
        fc1.weight[:, :10] = 0  # 230 zeros already, some of them with high random scores
    scores = get_criterion("random").score(nn.Sequential(), layers, None)
    prune_weights(layers, scores, ["fc1"], 0.5, "layer")
    assert bool((fc1.weight[:, :10] == 0).all())
    assert int((fc1.weight == 0).sum()) == round(0.5 * fc1.weight.numel())


def test_conv_layers_can_be_chosen_and_protected(layers) -> None:
    chosen = select_layers(layers, "prune_weights", ["conv", "linear"], protected=["fc2"])
    assert chosen == ["conv", "fc1"]
    with pytest.raises(InvalidSpec, match="prune_weights names unknown layers"):
        select_layers(layers, "prune_weights", ["linear"], ["fc9"])
    with pytest.raises(InvalidSpec, match="selects no layer"):
        select_layers(layers, "prune_weights", ["linear"], ["fc1"], ["fc1"])
