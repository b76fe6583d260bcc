"""Metrics on a hand-sized model equal the counts worked out by hand."""

from __future__ import annotations

import torch
from torch import nn

from compression.data import Dataset
from compression.evaluate import count_macs, count_parameters, measure, top1_accuracy
from jobspec import EvaluationSettings


def hand_sized() -> nn.Module:
    # conv 1->2, 3x3 on 5x5 -> 2x3x3; depthwise 2->2, 3x3, padding 1 -> 2x3x3; linear 18->4
    return nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=1, groups=2),
        nn.Flatten(),
        nn.Linear(18, 4),
    )


def test_parameters_and_macs_match_hand_counts() -> None:
    model = hand_sized()
    # parameters: conv 2*1*9 + 2 = 20; depthwise 2*1*9 + 2 = 20; linear 18*4 + 4 = 76
    assert count_parameters(model) == (116, 116)
    # MACs: conv 18 outputs * 9; depthwise 18 outputs * 9 (one input channel each); linear 4 * 18
    assert count_macs(model, (1, 5, 5)) == 162 + 162 + 72


def test_nonzero_parameters_count_zeros_out() -> None:
    model = hand_sized()
    with torch.no_grad():
        model[4].weight[:, :9] = 0
    assert count_parameters(model) == (116, 116 - 36)


def test_accuracy_counts_correct_argmax() -> None:
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    y = torch.tensor([0, 1, 1, 1, 0])  # the third is wrong
    data = Dataset(x, y, ("a", "b"))
    assert top1_accuracy(model, data, batch_size=2) == 4 / 5
    metrics = measure(model, (2,), data, EvaluationSettings(latency_repeats=5))
    assert metrics.accuracy == 4 / 5
    assert metrics.fp32_bytes == 16 and metrics.macs == 4
    assert metrics.latency_ms > 0
