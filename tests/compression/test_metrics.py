"""Metrics on a hand-sized model equal the counts worked out by hand."""

from __future__ import annotations

import time

import torch
from torch import nn

from compression.data import Dataset
from compression.evaluate import count_macs, count_parameters, measure, top1_accuracy
from compression.evaluate.latency import LatencySpread, compare_latency, spread
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


class Sleeper(nn.Module):
    """Takes a known time per call and records the order in which models were called."""

    def __init__(self, name: str, seconds: float, calls: list[str]) -> None:
        super().__init__()
        self.name, self.seconds, self.calls = name, seconds, calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.name)
        time.sleep(self.seconds)
        return x


def test_spread_is_median_and_deciles() -> None:
    assert spread([float(v) for v in range(1, 11)]) == LatencySpread(5.5, 1.9, 9.1)


def test_before_and_after_are_timed_interleaved_after_warmup() -> None:
    calls: list[str] = []
    comparison = compare_latency(
        Sleeper("b", 0.02, calls), Sleeper("a", 0.002, calls), (1,), repeats=6, warmup=2
    )
    assert calls[:4] == ["b", "a"] * 2  # warm-up, both models
    assert calls[4:] == ["b", "a", "a", "b"] * 3  # who goes first alternates
    assert comparison.threads == torch.get_num_threads() and comparison.repeats == 6
    assert comparison.before.p10_ms >= 20 and comparison.after.median_ms >= 2
    assert comparison.verdict == "faster" and comparison.reduction is not None
    assert 2 < comparison.reduction < 10.5  # 20 ms vs 2 ms plus the same overhead on each


def test_overlapping_spreads_give_no_ratio() -> None:
    calls: list[str] = []
    comparison = compare_latency(
        Sleeper("b", 0.003, calls), Sleeper("a", 0.003, calls), (1,), repeats=10, warmup=1
    )
    assert comparison.reduction is None
    assert comparison.verdict.startswith("spreads overlap")
