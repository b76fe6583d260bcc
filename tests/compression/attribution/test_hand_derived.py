"""DeepLIFT on a two-layer ReLU network equals the values derived by hand.

x = (1, 2), reference 0. fc1: W1 = [[1, -1], [2, 1]], b1 = (0.5, -1) -> z = (-0.5, 3),
reference z' = (0.5, -1); ReLU -> h = (0, 3), h' = (0.5, 0); fc2: W2 = [[1, 2], [-1, 1]]
-> logits (6, 3), reference (0.5, -0.5). Explaining class 0: m(logits) = (1, 0),
m(h) = W2^T m = (1, 2), Rescale ratios dh/dz = (-0.5/-1, 3/4) = (0.5, 0.75), so
m(z) = (0.5, 1.5) and R(z) = dz * m(z) = (-0.5, 6), which sums to 6 - 0.5 = 5.5.
Per weight of fc1, R_ji = m(z)_j W1_ji dx_i = [[0.5, -1], [3, 3]];
of fc2, R_ji = m_j W2_ji dh_i = [[-0.5, 6], [0, 0]].
"""

from __future__ import annotations

import torch
from torch import nn

from compression.attribution.engine import attribute
from compression.criteria import DeepLiftSettings, get_criterion
from compression.data import Dataset


def _network() -> tuple[nn.Module, dict[str, nn.Module]]:
    fc1, fc2 = nn.Linear(2, 2), nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        fc1.bias.copy_(torch.tensor([0.5, -1.0]))
        fc2.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 1.0]]))
    return nn.Sequential(fc1, nn.ReLU(), fc2), {"fc1": fc1, "fc2": fc2}


DATA = Dataset(torch.tensor([[1.0, 2.0]]), torch.tensor([0]), ("a", "b"))


def test_neuron_and_weight_relevance_match_the_derivation() -> None:
    model, layers = _network()
    result = attribute(model, layers, DATA, per_weight=True)

    assert torch.allclose(result.layers["fc1"].channel, torch.tensor([0.5, 6.0]))
    assert torch.allclose(result.layers["fc1"].channel_net, torch.tensor([0.5, 6.0]))
    assert torch.allclose(result.layers["fc2"].channel, torch.tensor([5.5, 0.0]))
    assert torch.allclose(result.layers["fc1"].weights, torch.tensor([[0.5, 1.0], [3.0, 3.0]]))
    assert torch.allclose(result.layers["fc2"].weights, torch.tensor([[0.5, 6.0], [0.0, 0.0]]))
    # ablation: |a * m| with a the layer output itself: |(-0.5, 3) * (0.5, 1.5)|
    assert torch.allclose(result.layers["fc1"].ablation, torch.tensor([0.25, 4.5]))
    assert result.completeness_error < 1e-7


def test_criterion_scores_follow_the_settings() -> None:
    model, layers = _network()
    plain = get_criterion("deeplift", deeplift=DeepLiftSettings(weight_score="relevance"))
    hybrid = get_criterion("deeplift")  # default: weight relevance x |w|
    assert torch.allclose(
        plain.score(model, layers, DATA)["fc1"].weights, torch.tensor([[0.5, 1.0], [3.0, 3.0]])
    )
    assert torch.allclose(
        hybrid.score(model, layers, DATA)["fc1"].weights, torch.tensor([[0.5, 1.0], [6.0, 3.0]])
    )
    assert hybrid.last is not None and hybrid.last.samples == 1


def test_margin_and_log_softmax_targets_are_conserved() -> None:
    model, layers = _network()
    margin = attribute(model, layers, DATA, target="margin")
    # margin = logit0 - logit1, m(logits) = (1, -1): R(logits) = (5.5, -3.5), which sums to
    # the margin's change (6 - 3) - (0.5 + 0.5) = 2
    assert torch.allclose(margin.layers["fc2"].channel, torch.tensor([5.5, 3.5]))
    for target in ("margin", "log_softmax"):
        assert attribute(model, layers, DATA, target=target).completeness_error < 1e-5


def test_competing_class_relevance_adds_up() -> None:
    """classes=2 also explains class 1 (the only competitor): m(logits) = (0, 1),
    m(h) = W2^T m = (-1, 1), m(z) = (-0.5, 0.75), R(z) = dz * m(z) = (0.5, 3), which sums to
    3 - (-0.5) = 3.5; fc1's channel score is |R| of both classes, (0.5 + 0.5, 6 + 3)."""
    model, layers = _network()
    both = attribute(model, layers, DATA, classes=2)
    assert torch.allclose(both.layers["fc1"].channel, torch.tensor([1.0, 9.0]))
    assert torch.allclose(both.layers["fc2"].channel, torch.tensor([5.5, 3.5]))
    assert both.completeness_error < 1e-7
    capped = attribute(model, layers, DATA, classes=5)  # never more than the classes there are
    assert torch.allclose(capped.layers["fc1"].channel, both.layers["fc1"].channel)
